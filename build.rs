//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the folders, but cargo only notices new files if
//! told to watch them.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
