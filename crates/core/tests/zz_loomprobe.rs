#![cfg(loom)]
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
fn run(mode: u8) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let s2 = seen.clone();
    loom::model(move || {
        let a = Arc::new(AtomicU64::new(0));
        let a2 = a.clone();
        let h = loom::thread::spawn(move || {
            if mode == 1 { let x = AtomicU64::new(0); x.store(1, Ordering::Relaxed); }
            if mode == 2 { loom::thread::yield_now(); }
            if mode == 3 { loom::hint::spin_loop(); }
            a2.load(Ordering::Relaxed); a2.store(1, Ordering::Release); });
        let v = a.load(Ordering::Acquire);
        s2.lock().unwrap().insert(v);
        h.join().unwrap();
    });
    std::println!("mode {mode}: {:?}", seen.lock().unwrap());
}
#[test]
fn probe() { for m in 0..4 { run(m); } }
