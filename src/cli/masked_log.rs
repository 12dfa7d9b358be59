//! Log lines on standard error with the pipeline's secrets masked. While
//! a pipeline compiles its secrets are not known yet, so lines are held
//! back until they are.

use std::io::Write;
use std::sync::Mutex;

use quiver::plan::Secrets;

/// The most log text held back while compiling; later lines are dropped.
const MOST_HELD: usize = 16 << 20;

enum State {
    /// No pipeline: lines go straight out.
    Open,
    /// Compiling: lines wait here, with the bytes dropped beyond [`MOST_HELD`].
    Holding(Vec<u8>, usize),
    /// Lines go out masked.
    Masking(Secrets),
}

static STATE: Mutex<State> = Mutex::new(State::Open);

/// Holds lines back until [`release`].
pub fn hold() {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*state, State::Open) {
        *state = State::Holding(Vec::new(), 0);
    }
}

/// Masks `secrets` from now on, and writes the lines held back.
pub fn release(secrets: Secrets) {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let State::Holding(held, dropped) = &*state {
        let text = secrets.redact(&String::from_utf8_lossy(held));
        let _ = std::io::stderr().write_all(text.as_bytes());
        if *dropped > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "({dropped} bytes of log lines written while compiling were dropped)"
            );
        }
    }
    *state = State::Masking(secrets);
}

/// Standard error through the mask. The log formatter writes each event
/// whole, so a secret is never split across writes.
pub struct MaskedStderr;

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            State::Open => std::io::stderr().write_all(buf)?,
            State::Holding(held, dropped) => {
                if held.len() + buf.len() <= MOST_HELD {
                    held.extend_from_slice(buf);
                } else {
                    *dropped += buf.len();
                }
            }
            State::Masking(secrets) if secrets.is_empty() => std::io::stderr().write_all(buf)?,
            State::Masking(secrets) => {
                let text = secrets.redact(&String::from_utf8_lossy(buf));
                std::io::stderr().write_all(text.as_bytes())?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
