//! The relay's money invariants over generated schedules of sales, faults, late processing,
//! webhooks, resolvers, crashes, reference reuse and follow-ups (see `tests/model/mod.rs`).
//!
//! Deterministic: the schedules come from a fixed seed. CI runs a bounded number; a long run
//! is `MODEL_CASES=100000 cargo test --release --test money_model -- --nocapture`, which
//! prints its figures (schedules, steps, invariant checks, violations).

mod model;

use std::sync::atomic::{AtomicU64, Ordering};

use model::{runtime, schedule, Model};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Schedules in a CI run.
const CI_CASES: u32 = 1000;

#[test]
fn every_schedule_keeps_the_money_invariants() {
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES);
    let seed: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_0013);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let (schedules, steps, checks, requests) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let started = std::time::Instant::now();
    let result = runner.run(&schedule(), |ops| {
        let m = runtime().block_on(Model::run(&ops));
        schedules.fetch_add(1, Ordering::Relaxed);
        steps.fetch_add(m.steps, Ordering::Relaxed);
        checks.fetch_add(m.checks, Ordering::Relaxed);
        requests.fetch_add(
            m.world().requests.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        proptest::prop_assert!(m.violations.is_empty(), "{:#?}", m.violations);
        Ok(())
    });
    eprintln!(
        "money model: seed {seed:#x}: {} schedules, {} steps, {} gateway requests, {} invariant checks, {} violations, {:.1} s",
        schedules.load(Ordering::Relaxed),
        steps.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
        checks.load(Ordering::Relaxed),
        u32::from(result.is_err()),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
