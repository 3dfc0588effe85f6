//! `sqlx::migrate!` embeds the files under `migrations/` at compile time; without this, adding a
//! new migration file would not trigger a rebuild and the binary would silently miss it.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
