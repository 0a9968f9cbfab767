//! The four stages and the pipeline that runs them.
