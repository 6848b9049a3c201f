// The dashboard is embedded from admin-ui/dist: rebuild when a new `npm run build` changes it.
fn main() {
    println!("cargo:rerun-if-changed=../admin-ui/dist");
}
