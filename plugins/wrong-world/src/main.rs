//! A WASI command component, not a weir operator.
fn main() {
    println!("I am not a weir plugin");
}
