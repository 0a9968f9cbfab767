//! The body of a child process of the replica and soak tests (tests/support/live_child.rs): run alone, without
//! the variables its parent sets, it returns at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the replica and soak tests; its parent starts it"]
async fn child() {
    crate::support::live_child::child_main().await;
}
