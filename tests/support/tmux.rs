//! A real terminal for the full-screen UI: a tmux server of the test's own
//! (its own socket), keys sent with `send-keys`, the screen read with
//! `capture-pane`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::WAIT;

/// A tmux server with one window of a given size.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` (a shell line) in a new `width`x`height` terminal;
    /// `None` if tmux is not installed.
    pub fn start(width: u16, height: u16, command: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            return None;
        }
        let socket = format!(
            "chatdrop-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let t = Tmux { socket };
        let (w, h) = (width.to_string(), height.to_string());
        let out = t.tmux(&["new-session", "-d", "-x", &w, "-y", &h, "sh", "-c", command]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(t)
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("running tmux")
    }

    /// Types `text` as it is.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
    }

    /// Presses keys by tmux's names (`Enter`, `C-c`, `M-2`).
    pub fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// The screen's text, a row a line.
    pub fn screen(&self) -> Vec<String> {
        let out = self.tmux(&["capture-pane", "-p"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    /// Waits until the screen satisfies `pred`; returns it.
    pub fn wait_screen(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the terminal shows its alternate screen (a full-screen
    /// program that did not restore it).
    pub fn alternate_screen(&self) -> bool {
        let out = self.tmux(&["display-message", "-p", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}
