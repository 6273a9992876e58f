//! A hook's output, bounded: the last bytes it wrote to stdout and stderr (one pipe, in
//! the order written), and whether earlier ones were cut off. Pure.

use std::collections::VecDeque;

/// The last `cap` bytes written.
#[derive(Debug, Clone)]
pub struct Tail {
    bytes: VecDeque<u8>,
    cap: usize,
    cut: bool,
}

impl Tail {
    /// An empty tail keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            bytes: VecDeque::with_capacity(cap.min(64 * 1024)),
            cap,
            cut: false,
        }
    }

    /// Appends `chunk`, dropping the oldest bytes beyond the cap.
    pub fn push(&mut self, chunk: &[u8]) {
        let keep = &chunk[chunk.len().saturating_sub(self.cap)..];
        let drop = (self.bytes.len() + keep.len()).saturating_sub(self.cap);
        if drop > 0 || keep.len() < chunk.len() {
            self.cut = true;
        }
        self.bytes.drain(..drop.min(self.bytes.len()));
        self.bytes.extend(keep);
    }

    /// The text kept (invalid UTF-8 replaced; a character split by the cut dropped) and
    /// whether anything was cut off.
    pub fn finish(self) -> (String, bool) {
        let bytes: Vec<u8> = self.bytes.into();
        let start = if self.cut {
            // Continuation bytes of a character whose start was cut away.
            bytes
                .iter()
                .take(3)
                .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
                .count()
        } else {
            0
        };
        (
            String::from_utf8_lossy(&bytes[start..]).into_owned(),
            self.cut,
        )
    }
}
