//! Hit ratio of `ringo::cache::LocalCache` against a plain LRU (the `lru` crate) on a
//! Zipf(0.99) trace: 1,000,000 requests over 100,000 keys, at cache sizes of 1 % and
//! 10 % of the keys, misses filled as cache-aside does. Prints a Markdown table, then
//! the key filter's size, false-positive rate and lookup time over the same keys.
//!
//! Run: `cargo run --release --example cache_hit_ratio [-- --requests N --keys K --seed S]`.

use std::num::NonZeroUsize;

use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use ringo::cache::{CacheConfig, LocalCache, Lookup};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut requests, mut keys, mut seed) = (1_000_000usize, 100_000u64, 42u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--requests" => requests = value.parse()?,
            "--keys" => keys = value.parse()?,
            "--seed" => seed = value.parse()?,
            _ => return Err(format!("unknown flag {flag} (--requests, --keys, --seed)").into()),
        }
    }
    let zipf = Zipf::new(keys as f64, 0.99)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Zipf ranks are 1..=keys; scramble them so popular keys are not neighbours.
    let trace: Vec<String> = (0..requests)
        .map(|_| format!("key:{}", (zipf.sample(&mut rng) as u64).wrapping_mul(0x9e37_79b9) % keys))
        .collect();
    println!("Zipf(0.99), {requests} requests over {keys} keys, seed {seed}");
    println!();
    println!("| cache size | ringo::cache (quick_cache) | plain LRU |");
    println!("|---|---|---|");
    for percent in [1u64, 10] {
        let capacity = (keys * percent / 100) as usize;
        let ours = ringo_hits(&trace, capacity);
        let lru = lru_hits(&trace, capacity);
        println!(
            "| {percent} % ({capacity} entries) | {:.2} % | {:.2} % |",
            100.0 * ours as f64 / requests as f64,
            100.0 * lru as f64 / requests as f64
        );
    }
    let ids: Vec<String> = (0..keys).map(|k| format!("key:{k}")).collect();
    let began = std::time::Instant::now();
    let filter = ringo::cache::KeyFilter::build(ids.iter().map(String::as_str))?;
    let built = began.elapsed();
    let probes = 1_000_000u64;
    let began = std::time::Instant::now();
    let false_positives = (0..probes).filter(|i| filter.may_contain(&format!("absent:{i}"))).count();
    let per_lookup = began.elapsed().as_nanos() as f64 / probes as f64;
    println!();
    println!(
        "Key filter over {keys} keys: {} bytes, {:.2} bits per key, built in {} ms; {false_positives} false positives in {probes} absent keys ({:.3} %); {per_lookup:.0} ns per lookup (key formatting included)",
        filter.bytes(),
        filter.bits_per_key(),
        built.as_millis(),
        100.0 * false_positives as f64 / probes as f64
    );
    Ok(())
}

fn ringo_hits(trace: &[String], capacity: usize) -> usize {
    // Bytes far past what the entries weigh: the entry bound is the one that binds.
    let config = CacheConfig { max_entries: capacity, max_bytes: 1 << 40, ..CacheConfig::default() };
    let cache: LocalCache<u8> = LocalCache::new("ratio", config, |_| 0);
    let mut hits = 0;
    for key in trace {
        match cache.get(key) {
            Lookup::Hit(_) => hits += 1,
            _ => cache.insert(key, 0),
        }
    }
    hits
}

fn lru_hits(trace: &[String], capacity: usize) -> usize {
    let mut cache = lru::LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN));
    let mut hits = 0;
    for key in trace {
        if cache.get(key).is_some() {
            hits += 1;
        } else {
            cache.put(key.clone(), 0u8);
        }
    }
    hits
}
