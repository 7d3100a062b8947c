//! The cookie file is created atomically (issue 22 item 16): processes (here
//! threads) starting at once in a fresh home all get the same secret, and
//! none sees the file before its secret is in it ("cookie file … is
//! empty").

mod support;

use std::sync::{Arc, Barrier};
use std::thread;

use erlangen::crypto::cookie;
use support::TempDir;

#[test]
fn many_starters_at_once_all_read_one_secret() {
    let temp = TempDir::new("cookie-race");
    let dir = &temp.0;
    const STARTERS: usize = 8;
    for trial in 0..100 {
        let path = dir.join(format!("cookie-{trial}"));
        let go = Arc::new(Barrier::new(STARTERS));
        let starters: Vec<_> = (0..STARTERS)
            .map(|_| {
                let (path, go) = (path.clone(), Arc::clone(&go));
                thread::spawn(move || {
                    go.wait();
                    cookie::load_or_create(&path).map_err(|e| e.to_string())
                })
            })
            .collect();
        let secrets: Vec<Result<Vec<u8>, String>> =
            starters.into_iter().map(|t| t.join().unwrap()).collect();
        let first = secrets[0]
            .clone()
            .unwrap_or_else(|e| panic!("trial {trial}: {e}"));
        for s in &secrets {
            assert_eq!(s.as_ref(), Ok(&first), "trial {trial}");
        }
        // Nothing but the cookie is left behind.
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(&format!("cookie-{trial}")) || n.contains(".tmp"))
            .collect();
        assert_eq!(left, [format!("cookie-{trial}")], "trial {trial}");
    }
}
