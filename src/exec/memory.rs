//! How much memory a run holds: the bytes of live outputs, each Arrow
//! buffer counted once however many outputs share it, and the process's
//! peak resident memory.
//!
//! Outputs share buffers all the time: a fan-in's data columns are its
//! producers' arrays, a slice or a projection points into its input's
//! buffers. Summing each output's own size counts a shared buffer once per
//! holder, which is how a run holding 10 GB reported 73 GB.

// Looked up by pointer for every buffer of every output: aHash, not
// SipHash; never iterated, so the order cannot show.
use ahash::AHashMap as HashMap;

use quiver_operators::Table;
use quiver_operators::arrow::array::{Array, ArrayData};

/// The buffers of the outputs alive at one time, by allocation.
#[derive(Debug, Default)]
pub struct LiveBuffers {
    /// Allocation start → (its bytes, the live outputs holding it).
    held: HashMap<usize, (usize, u32)>,
    /// The allocations of each live output, by node: listed once when the
    /// output arrives, not walked again when it goes.
    outputs: HashMap<usize, Buffers>,
    live: usize,
    peak: usize,
}

impl LiveBuffers {
    /// An output of node `node` whose [`buffers`] are `buffers` became
    /// live; returns its own bytes, each of its buffers counted once.
    pub fn add(&mut self, node: usize, buffers: Buffers) -> usize {
        let mut own = 0;
        for &(ptr, bytes) in &buffers {
            own += bytes;
            let entry = self.held.entry(ptr).or_insert((bytes, 0));
            if entry.1 == 0 {
                self.live += bytes;
            }
            entry.1 += 1;
        }
        self.peak = self.peak.max(self.live);
        if let Some(old) = self.outputs.insert(node, buffers) {
            self.release(&old);
        }
        own
    }

    /// The output of `node`, added before, is no longer live.
    pub fn remove(&mut self, node: usize) {
        if let Some(buffers) = self.outputs.remove(&node) {
            self.release(&buffers);
        }
    }

    fn release(&mut self, buffers: &[(usize, usize)]) {
        for (ptr, _) in buffers {
            if let Some(entry) = self.held.get_mut(ptr) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.live -= entry.0;
                    self.held.remove(ptr);
                }
            }
        }
    }

    /// The bytes alive now.
    pub fn live(&self) -> usize {
        self.live
    }

    /// The most bytes alive at one time.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

/// The distinct allocations behind a table's arrays, as (start, bytes).
pub type Buffers = Vec<(usize, usize)>;

/// The distinct allocations behind `table`'s arrays.
pub fn buffers(table: &Table) -> Buffers {
    let mut out = Vec::new();
    for batch in table.batches() {
        for column in batch.columns() {
            collect(&column.to_data(), &mut out);
        }
    }
    out.sort_unstable();
    out.dedup_by_key(|(ptr, _)| *ptr);
    out
}

fn collect(data: &ArrayData, out: &mut Vec<(usize, usize)>) {
    let nulls = data.nulls().map(|n| n.buffer());
    for buffer in data.buffers().iter().chain(nulls) {
        // Empty buffers hold no allocation (and share a dangling pointer).
        if buffer.capacity() > 0 {
            out.push((buffer.data_ptr().as_ptr() as usize, buffer.capacity()));
        }
    }
    for child in data.child_data() {
        collect(child, out);
    }
}

/// The most memory the process has held resident since it started, where
/// the system says (Linux: `VmHWM` in `/proc/self/status`).
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The CPU time (user + system) of every thread of the process so far,
/// where the system says (Linux: `/proc/self/stat`, in ticks of 1/100 s,
/// the `USER_HZ` Linux reports on every architecture it exposes it for).
pub fn process_cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // utime and stime are fields 14 and 15 of the whole line, so 12 and 13
    // after the name (the state is the first).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use quiver_operators::arrow::array::{Float64Array, StringArray};
    use quiver_operators::arrow::datatypes::{DataType, Field, Schema};
    use quiver_operators::arrow::record_batch::RecordBatch;

    fn table(n: usize) -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("close", DataType::Float64, true),
            Field::new("symbol", DataType::Utf8, false),
        ]));
        let close = Float64Array::from_iter((0..n).map(|i| (i % 7 != 0).then_some(i as f64)));
        let symbol = StringArray::from_iter_values((0..n).map(|i| format!("S{i}")));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(close), Arc::new(symbol)]).unwrap();
        Table::from_batch(batch)
    }

    #[test]
    fn shared_buffers_count_once() {
        let source = table(10_000);
        let mut live = LiveBuffers::default();
        let own = live.add(0, buffers(&source));
        assert!(own >= 10_000 * 8, "{own}");
        assert!(own <= source.memory_size());
        // Slices of the source, and the source itself twice over, hold no new memory.
        let batch = &source.batches()[0];
        let halves = Table::new(
            batch.schema(),
            vec![batch.slice(0, 5_000), batch.slice(5_000, 5_000)],
        );
        assert_eq!(live.add(1, buffers(&halves)), own);
        let twice = Table::new(batch.schema(), vec![batch.clone(), batch.clone()]);
        assert_eq!(live.add(2, buffers(&twice)), own);
        assert_eq!(live.peak(), own);
        // The memory is live until its last holder goes.
        live.remove(0);
        live.remove(1);
        assert_eq!(live.live, own);
        live.remove(2);
        assert_eq!(live.live, 0);
        assert!(live.held.is_empty());
        // A copy is new memory.
        let copy = table(10_000);
        live.add(0, buffers(&source));
        live.add(1, buffers(&copy));
        assert_eq!(live.peak(), 2 * own);
    }

    #[test]
    fn peak_resident_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_resident_bytes().unwrap() > 1 << 20);
        }
    }
}
