#[global_allocator]
static ALLOC: benches::Counting = benches::Counting;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let b = benches::Counting::live();
    let t = std::time::Instant::now();
    let d = benches::tenants(n);
    println!(
        "deployment {n} tenants: {} KiB in {:?}",
        (benches::Counting::live() - b) / 1024,
        t.elapsed()
    );
    drop(d);
}
