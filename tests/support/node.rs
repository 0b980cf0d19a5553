//! The Node.js tools some tests drive (the generated TypeScript client, the
//! console's build and its browser tests): availability, installs from a
//! lock file, and running a command to success.

use std::path::Path;
use std::process::Command;

/// Whether a tool can be run; a test without it is skipped with a note,
/// but under CI (`CI=true`) that is a failure: `.ci/run` installs it.
pub fn available(program: &str, arg: &str) -> bool {
    let found = Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{program} is required under CI=true (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {program} is not installed");
    }
    found
}

/// Run a command to success, or fail with its output; its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `npm ci` in `dir` when its lock file changed since the last install
/// (a stamp in `node_modules` remembers which lock file it installed).
/// Serialized across the tests of one process: two installs into one
/// folder at once would corrupt it.
pub fn npm_install(dir: &Path) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lock = std::fs::read(dir.join("package-lock.json")).expect("package-lock.json");
    let stamp = dir.join("node_modules/.installed-from");
    let digest = {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        lock.hash(&mut hasher);
        hasher.finish().to_string()
    };
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(digest.as_str()) {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            // Playwright's browsers are never downloaded: Debian's Chromium is used.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(dir));
        std::fs::write(&stamp, &digest).expect("write the install stamp");
    }
}
