//! Benchmark: builds a manifest of 2,000 small files plus one large file in a temp dir and
//! prints hash time and throughput.
//!
//! Usage: `cargo run --release -p mop-fileserver --example hash_bench -- <large-file-MiB>`
//!
//! The files were just written, so they sit in the page cache: this measures hashing (CPU),
//! not the disk.

use std::error::Error;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use mop_fileserver::{sha256_file, FileServer, FileServerConfig, ManifestBuilder, RootSpec};

const SMALL_FILES: usize = 2_000;
const MIB: u64 = 1024 * 1024;

fn main() -> Result<(), Box<dyn Error>> {
    let large_mib: u64 = match std::env::args().nth(1) {
        Some(text) => text
            .parse()
            .map_err(|_| format!("invalid size `{text}`: expected a whole number of MiB"))?,
        None => return Err("usage: hash_bench <large-file-MiB>".into()),
    };
    let dir = tempfile::tempdir()?;
    let root = fs::canonicalize(dir.path())?;

    let started = Instant::now();
    let mut sources = Vec::with_capacity(SMALL_FILES + 1);
    let mut small_bytes = 0u64;
    for index in 0..SMALL_FILES {
        let directory = format!("d{:02}", index % 40);
        fs::create_dir_all(root.join(&directory))?;
        let name = format!("{directory}/f{index:04}.txt");
        let length = 512 + (index * 7919) % 16_384;
        let content: Vec<u8> = (0..length).map(|byte| (byte ^ index) as u8).collect();
        fs::write(root.join(&name), &content)?;
        small_bytes += length as u64;
        sources.push(name);
    }
    write_large_file(&root.join("large.bin"), large_mib)?;
    sources.push("large.bin".to_owned());
    eprintln!(
        "setup: {SMALL_FILES} small files ({:.1} MiB) + 1 file of {large_mib} MiB written in {:.2?}",
        small_bytes as f64 / MIB as f64,
        started.elapsed()
    );

    let server = FileServer::new(FileServerConfig {
        base_dir: root.clone(),
        roots: vec![RootSpec::new(".", "hash_bench")],
        ..FileServerConfig::default()
    })?;
    let resolve_started = Instant::now();
    let mut builder = ManifestBuilder::new();
    for source in &sources {
        builder.add(&server.resolve(source)?);
    }
    let resolve_time = resolve_started.elapsed();
    let manifest = builder.finish()?;
    let stats = manifest.wait_all().map_err(|error| error.to_string())?;
    println!("resolve: {} sources in {:.2?}", sources.len(), resolve_time);
    println!(
        "manifest: {} files, {:.1} MiB, hashed in {:.2?} on {} threads: {:.0} MiB/s",
        stats.files,
        stats.bytes as f64 / MIB as f64,
        stats.hash_time,
        stats.threads,
        stats.throughput_mib_per_second()
    );

    // For comparison: the large file alone on one core (SHA-256 of one file is sequential).
    let single_started = Instant::now();
    sha256_file(&root.join("large.bin"))?;
    let single = single_started.elapsed();
    println!(
        "large file alone, one thread: {large_mib} MiB in {single:.2?}: {:.0} MiB/s",
        large_mib as f64 / single.as_secs_f64().max(f64::EPSILON)
    );

    // The small files alone, all threads versus one.
    let mut parallel_builder = ManifestBuilder::new();
    let mut sequential_builder = ManifestBuilder::new();
    for source in &sources[..SMALL_FILES] {
        let served = server.resolve(source)?;
        parallel_builder.add(&served);
        sequential_builder.add(&served);
    }
    let parallel = parallel_builder
        .finish()?
        .wait_all()
        .map_err(|error| error.to_string())?;
    let sequential = sequential_builder
        .finish_with_threads(1)?
        .wait_all()
        .map_err(|error| error.to_string())?;
    println!(
        "{SMALL_FILES} small files: {:.2?} on {} threads, {:.2?} on 1 thread",
        parallel.hash_time, parallel.threads, sequential.hash_time
    );

    // The whole manifest again with a digest cache, as the next push of unchanged files: once
    // to fill it (after the settle time, as for files of a repository), once to use it.
    std::thread::sleep(mop_fileserver::DIGEST_CACHE_SETTLED);
    let cache = root.join("cache").join("digests");
    let mut timings = Vec::new();
    for _ in 0..2 {
        let mut builder = ManifestBuilder::new().with_digest_cache(Some(cache.clone()));
        for source in &sources {
            builder.add(&server.resolve(source)?);
        }
        let started = Instant::now();
        let stats = builder
            .finish()?
            .wait_all()
            .map_err(|error| error.to_string())?;
        timings.push((started.elapsed(), stats.cached));
    }
    println!(
        "with the digest cache: {:.2?} filling it, {:.2?} using it ({} of {} files from it)",
        timings[0].0,
        timings[1].0,
        timings[1].1,
        sources.len()
    );
    Ok(())
}

/// Writes `mib` MiB of non-constant bytes, 1 MiB at a time.
fn write_large_file(path: &Path, mib: u64) -> std::io::Result<()> {
    let mut writer = BufWriter::new(File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; MIB as usize];
    for _ in 0..mib {
        for word in block.chunks_exact_mut(8) {
            // xorshift64: cheap, not constant, so nothing can shortcut the hashing.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        writer.write_all(&block)?;
    }
    writer.flush()
}
