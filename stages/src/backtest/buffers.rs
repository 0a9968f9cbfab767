//! Large output buffers (a million bars of equity, signal flags) backed by transparent huge pages where the OS
//! offers them.
//!
//! A fresh 8 MB buffer costs 2 048 page faults on first write; on a virtual machine each costs microseconds, so a
//! 1M-bar backtest would spend more time in the kernel than computing. Asking for huge pages (Linux
//! `madvise(MADV_HUGEPAGE)`, honoured when transparent huge pages are in `madvise` or `always` mode) cuts that to
//! a handful of faults. Elsewhere, or when refused, this is an ordinary `vec![value; n]`.

/// `vec![value; n]`, with its memory advised for huge pages first when it spans at least two of them.
pub fn filled<T: Clone>(n: usize, value: T) -> Vec<T> {
    let mut v = with_capacity(n);
    v.resize(n, value);
    v
}

/// `Vec::with_capacity(n)`, its memory advised for huge pages (for buffers written once, front to back).
pub fn with_capacity<T>(n: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge(v.as_mut_ptr().cast::<u8>(), n.saturating_mul(std::mem::size_of::<T>()));
    v
}

/// Keeps every thread's allocations in one malloc heap, for a one-shot research run. glibc gives each thread
/// that allocates its own heap and keeps what is freed there for reuse; a backtest decodes its file on the
/// Parquet reader's threads and runs on the main thread, so the decode buffers would stay resident beside the
/// columns for the rest of the run (about 8 MB of a 1M-bar run's peak). Call before any thread is started.
pub fn one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; M_ARENA_MAX takes effect for arenas created later and
    // is safe to set at any time. A refusal (returned 0) leaves the default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// For a single run: blocks of 1 MiB and more are mapped on their own and handed back to the system when freed.
/// glibc otherwise raises that threshold after the first large free, so the file's row-group decode buffers
/// come from the heap and stay resident until the heap is trimmed, beside the decoded columns: a 1M-bar run's
/// peak then varies between 51 and 64 MB with how the threads' buffers happen to overlap (measured), and is
/// 50–56 MB with this. A sweep keeps the adaptive threshold: it reuses its per-combination buffers from the
/// heap instead of faulting fresh pages for each (about 10 % of a 90-combination sweep's time here). Call
/// before any thread is started.
pub fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; M_MMAP_THRESHOLD applies to allocations made later
    // and is safe to set at any time. A refusal (returned 0) leaves the default, which is only less frugal.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(target_os = "linux")]
fn advise_huge(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < 2 * HUGE {
        return;
    }
    let start = (ptr as usize).div_ceil(HUGE) * HUGE;
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end > start {
        // SAFETY: [start, end) lies inside the allocation `ptr..ptr+len` that the caller owns and has not
        // handed out; MADV_HUGEPAGE is only a hint about how to back it and never changes its contents. A
        // failure (e.g. THP disabled) leaves ordinary pages, so the result is ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_ptr: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn is_vec_filled() {
        assert_eq!(super::filled(3, 1.5), vec![1.5; 3]);
        let big = super::filled(1 << 20, 0.0f64);
        assert!(big.len() == 1 << 20 && big.iter().all(|v| *v == 0.0));
        assert!(super::filled::<u8>(0, 0).is_empty());
    }
}
