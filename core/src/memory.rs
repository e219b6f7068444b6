//! Memory a run will need, predicted before it starts, checked against what the machine
//! has (or what the user allows with `--max-memory`).
//!
//! Every pipeline builds an [`Estimate`] from its configs and the request (weights at
//! load; activations, attention blocks, audio buffers before generating) and calls
//! [`check`]: a request that does not fit is refused with the estimate and the memory
//! available, before anything large is allocated. The limit is process-wide ([`set_limit`]):
//! the CLI, the studio and the server set it once. [`Counting`] wraps the global allocator
//! so a run's real peak can be compared with its estimate.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Bytes a run will add to the process, by part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    /// What the memory is for (shown in the refusal).
    pub what: String,
    /// The parts.
    pub parts: Vec<Part>,
}

/// One part of an [`Estimate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// What it holds.
    pub name: String,
    /// Bytes.
    pub bytes: u64,
    /// Held for the whole run (weights, a KV cache) rather than allocated and freed step by
    /// step: the allocator factor does not apply to it.
    pub kept: bool,
}

impl Estimate {
    /// An empty estimate for `what` (e.g. "a 512x512 image").
    pub fn new(what: impl Into<String>) -> Self {
        Self { what: what.into(), parts: Vec::new() }
    }

    /// Adds a part of short-lived tensors (`bytes` saturates rather than wrapping).
    pub fn part(mut self, name: impl Into<String>, bytes: u64) -> Self {
        self.parts.push(Part { name: name.into(), bytes, kept: false });
        self
    }

    /// Adds a part held for the whole run (weights, caches).
    pub fn kept(mut self, name: impl Into<String>, bytes: u64) -> Self {
        self.parts.push(Part { name: name.into(), bytes, kept: true });
        self
    }

    /// Adds a short-lived part of `elements` f32 values (a product of sizes, saturating).
    pub fn floats(self, name: impl Into<String>, elements: &[usize]) -> Self {
        self.part(name, f32_bytes(elements))
    }

    /// Adds a kept part of `elements` f32 values.
    pub fn kept_floats(self, name: impl Into<String>, elements: &[usize]) -> Self {
        self.kept(name, f32_bytes(elements))
    }

    /// The sum of the parts.
    pub fn total(&self) -> u64 {
        self.parts.iter().fold(0u64, |a, p| a.saturating_add(p.bytes))
    }

    /// The resident memory the parts add with an allocator `factor` on the short-lived ones.
    pub fn resident(&self, factor: f64) -> u64 {
        let f = factor.max(1.0);
        let r = self.parts.iter().map(|p| if p.kept { p.bytes as f64 } else { p.bytes as f64 * f }).sum::<f64>();
        r.min(u64::MAX as f64) as u64
    }
}

fn f32_bytes(elements: &[usize]) -> u64 {
    elements.iter().fold(4u64, |a, &e| a.saturating_mul(e as u64))
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", human(self.total()))?;
        let shown: Vec<String> = self.parts.iter().filter(|p| p.bytes > 0).map(|p| format!("{} {}", p.name, human(p.bytes))).collect();
        if shown.len() > 1 {
            write!(f, " ({})", shown.join(", "))?;
        }
        Ok(())
    }
}

/// `bytes` as a person reads it: `512 B`, `3.4 MiB`, `12.0 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// How much memory runs may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryLimit {
    /// What the machine has available when the run starts (within the process's cgroup
    /// limit, if any).
    #[default]
    Machine,
    /// The whole process may hold at most this many bytes (`--max-memory`).
    Bytes(u64),
}

impl std::str::FromStr for MemoryLimit {
    type Err = Error;

    /// `machine`, or a size: `8G`, `8GiB`, `512M`, `1.5GB`, `1000000` (bytes); K, M, G and
    /// T are powers of 1024 with or without `i`/`B`.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("machine") {
            return Ok(Self::Machine);
        }
        let bad = || Error::InvalidArgument(format!("memory size {s:?}: expected a number with an optional unit (K, M, G, T), e.g. 8G or 512M, or `machine`"));
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let scale = match unit.trim().to_ascii_uppercase().trim_end_matches('B').trim_end_matches('I') {
            "" => 1u64,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(bad()),
        };
        let bytes = value * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Self::Bytes(bytes as u64))
    }
}

static LIMIT: AtomicU64 = AtomicU64::new(0);
/// f64 bits of the allocator factor (0: 1.0).
static FACTOR: AtomicU64 = AtomicU64::new(0);

/// Sets how much resident memory a byte of short-lived tensors costs at the peak with the
/// process's allocator (default 1). An allocator that keeps freed pages for reuse (the
/// `stipple` binary's mimalloc set-up) holds freed blocks of one size while blocks of
/// another are allocated, so its resident peak runs above the bytes alive at once; the
/// binary sets the factor it was measured at.
pub fn set_allocator_factor(factor: f64) {
    FACTOR.store(if factor.is_finite() && factor >= 1.0 { factor.to_bits() } else { 0 }, Ordering::Relaxed);
}

/// The allocator factor ([`set_allocator_factor`]).
pub fn allocator_factor() -> f64 {
    match FACTOR.load(Ordering::Relaxed) {
        0 => 1.0,
        bits => f64::from_bits(bits),
    }
}

/// Sets the process-wide limit every [`check`] applies (the default is
/// [`MemoryLimit::Machine`]).
pub fn set_limit(limit: MemoryLimit) {
    LIMIT.store(
        match limit {
            MemoryLimit::Machine => 0,
            MemoryLimit::Bytes(b) => b.max(1),
        },
        Ordering::Relaxed,
    );
}

/// The process-wide limit.
pub fn limit() -> MemoryLimit {
    match LIMIT.load(Ordering::Relaxed) {
        0 => MemoryLimit::Machine,
        b => MemoryLimit::Bytes(b),
    }
}

/// Checks `need` against the process-wide limit and allocator factor ([`check_against`]),
/// and remembers it with the resident memory at the time ([`predicted_peak`]). The
/// returned [`Reservation`] covers the checks a run makes inside itself while it is held
/// (music checks the whole clip, then each window's painting checks again): a nested
/// check whose predicted peak is within the reserved one passes.
pub fn check(need: &Estimate) -> Result<Reservation> {
    let held = resident().unwrap_or(0);
    let predicted = held.saturating_add(need.resident(allocator_factor()));
    PREDICTED.fetch_max(predicted, Ordering::Relaxed);
    let reserved = RESERVED.with(|r| r.get());
    if predicted > reserved {
        check_against(limit(), allocator_factor(), need)?;
    }
    Ok(Reservation { previous: RESERVED.with(|r| r.replace(reserved.max(predicted))) })
}

thread_local! {
    /// The predicted peak the runs in progress on this thread were checked for.
    static RESERVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A checked run's predicted peak, covering the checks nested inside it until dropped.
pub struct Reservation {
    previous: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        RESERVED.with(|r| r.set(self.previous));
    }
}

static PREDICTED: AtomicU64 = AtomicU64::new(0);

/// The largest resident size predicted by a [`check`] in this process so far (resident
/// memory then, plus the estimate times the allocator factor): what `STIPPLE_MEMORY_REPORT`
/// compares with the measured peak.
pub fn predicted_peak() -> u64 {
    PREDICTED.load(Ordering::Relaxed)
}

/// The process's peak resident size so far (`VmHWM`; `None` where the platform cannot say).
pub fn peak_resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|kb| kb * 1024)
}

/// Refuses `need` (times the allocator `factor`) when it does not fit: under
/// [`MemoryLimit::Machine`] it must fit in the memory available now; under
/// [`MemoryLimit::Bytes`] the process's resident memory plus it must stay under the limit.
/// When the machine cannot say (an unknown platform) nothing is refused.
pub fn check_against(limit: MemoryLimit, factor: f64, need: &Estimate) -> Result<()> {
    let total = need.resident(factor);
    let (room, said) = match limit {
        MemoryLimit::Machine => match available() {
            Some(a) => (a, format!("{} is available", human(a))),
            None => return Ok(()),
        },
        MemoryLimit::Bytes(max) => {
            let held = resident().unwrap_or(0);
            (max.saturating_sub(held), format!("--max-memory is {} and the process holds {}", human(max), human(held)))
        }
    };
    if total <= room {
        return Ok(());
    }
    let overhead = if total > need.total() { format!("; {} with what the allocator keeps", human(total)) } else { String::new() };
    let parts: Vec<String> = need.parts.iter().filter(|p| p.bytes > 0).map(|p| format!("{} {}", p.name, human(p.bytes))).collect();
    Err(Error::Memory(format!(
        "{} needs about {} more memory ({}{overhead}), but {said}: ask for less (a smaller size, batch or length){}",
        need.what,
        human(need.total()),
        parts.join(", "),
        if limit == MemoryLimit::Machine { ", or raise the limit with --max-memory if you know better" } else { ", or raise --max-memory" }
    )))
}

/// Memory the machine can give now, in bytes: the available memory, or what the process's
/// cgroup still allows if that is less (containers, SLURM jobs). `None` where the platform
/// cannot say.
pub fn available() -> Option<u64> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    let machine = sys.available_memory();
    if machine == 0 {
        return None;
    }
    Some(match sys.cgroup_limits() {
        Some(c) => machine.min(c.free_memory),
        None => machine,
    })
}

/// This process's resident memory in bytes (`None` where the platform cannot say).
pub fn resident() -> Option<u64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = sysinfo::System::new();
    sys.refresh_processes_specifics(sysinfo::ProcessesToUpdate::Some(&[pid]), false, sysinfo::ProcessRefreshKind::nothing().with_memory());
    sys.process(pid).map(|p| p.memory()).filter(|&m| m > 0)
}

/// A global allocator wrapper that counts the bytes allocated now and at the peak, so a
/// run's real peak can be compared with its [`Estimate`] (`Counting::peak`,
/// `Counting::reset_peak`).
pub struct Counting<A> {
    inner: A,
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl<A> Counting<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner, now: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
    }

    /// Bytes allocated now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    /// The most bytes allocated at once since the start or the last [`Counting::reset_peak`].
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts a new peak from the bytes allocated now.
    pub fn reset_peak(&self) {
        self.peak.store(self.now(), Ordering::Relaxed);
    }

    fn grew(&self, by: usize) {
        let now = self.now.fetch_add(by, Ordering::Relaxed) + by;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
}

// Safety: every call is forwarded to `inner` unchanged; only counters are updated.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Safety: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Safety: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.now.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Safety: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                self.grew(new_size - layout.size());
            } else {
                self.now.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!("8G".parse::<MemoryLimit>().unwrap(), MemoryLimit::Bytes(8 << 30));
        assert_eq!("512MiB".parse::<MemoryLimit>().unwrap(), MemoryLimit::Bytes(512 << 20));
        assert_eq!("1.5gb".parse::<MemoryLimit>().unwrap(), MemoryLimit::Bytes(3 << 29));
        assert_eq!("1000".parse::<MemoryLimit>().unwrap(), MemoryLimit::Bytes(1000));
        assert_eq!("machine".parse::<MemoryLimit>().unwrap(), MemoryLimit::Machine);
        for bad in ["", "G", "8X", "-1G", "0", "1e999G", "8 GG"] {
            assert!(bad.parse::<MemoryLimit>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn estimates_add_up_and_refuse_what_does_not_fit() {
        let e = Estimate::new("a test run").floats("activations", &[1024, 1024]).part("weights", 1 << 20);
        assert_eq!(e.total(), 5 << 20);
        assert_eq!(e.to_string(), "5.0 MiB (activations 4.0 MiB, weights 1.0 MiB)");
        let huge = Estimate::new("a huge run").floats("activations", &[usize::MAX, usize::MAX]);
        assert_eq!(huge.total(), u64::MAX);
        let err = check_against(MemoryLimit::Bytes(1 << 30), 1.0, &huge).unwrap_err().to_string();
        assert!(err.contains("a huge run needs about") && err.contains("--max-memory is 1.0 GiB"), "{err}");
        if available().is_some() {
            let err = check_against(MemoryLimit::Machine, 1.0, &huge).unwrap_err().to_string();
            assert!(err.contains("is available"), "{err}");
            assert!(check_against(MemoryLimit::Machine, 2.0, &Estimate::new("small").part("x", 1 << 20)).is_ok());
        }
        let held = resident().unwrap_or(0);
        assert!(check_against(MemoryLimit::Bytes(held + (64 << 20)), 1.0, &Estimate::new("fits").part("x", 1 << 20)).is_ok());
    }
}
