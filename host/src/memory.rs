//! Start-up code, given back once the server is up.
//!
//! Start-up (argument parsing, configuration, plugin loading, the model's deserialisation)
//! runs code spread over the whole binary, and the kernel maps 64 KiB around every code page
//! it faults in ("fault-around"): by the time the server listens, nearly all of the ~7.5 MB
//! of `.text` is resident although serving runs a fraction of it. That was most of the idle
//! process's RSS (P6 in docs/benchmarks.md). `MADV_PAGEOUT` on the binary's code asks the
//! kernel to reclaim those pages (they are clean and file-backed: nothing is written, and a
//! page that runs again is faulted back in from the page cache). Linux 5.4 and later; on
//! failure nothing changes.

/// Releases the resident pages of the executable's read-only mappings (code and constants).
pub fn release_startup_code() {
    #[cfg(target_os = "linux")]
    if let Err(e) = page_out_own_code() {
        tracing::debug!("could not release start-up code pages: {e}");
    }
}

/// Pages out the binary's read-only mappings; how many bytes they span.
#[cfg(target_os = "linux")]
fn page_out_own_code() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for line in maps.lines() {
        // `start-end perms offset dev inode   path` (the path may contain spaces)
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).map(str::trim_start);
        if path != Some(exe.as_ref()) || perms.contains('w') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: advice on a range the kernel lists as mapped in this process; paging out
        // clean file-backed pages changes no contents, only what is resident.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        advised += end - start;
    }
    Ok(advised)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The kernel accepts the advice for every read-only mapping of the (test) binary, and
    /// the code paged out runs again afterwards.
    #[test]
    fn the_binarys_code_can_be_paged_out_and_runs_on() {
        let advised = super::page_out_own_code().expect("madvise(MADV_PAGEOUT) refused");
        // At least the code itself: the binary's own mappings were found.
        assert!(advised > 64 * 1024, "{advised} bytes");
        let sum: u64 = (1..=100u64).map(|i| i * i).sum();
        assert_eq!(sum, 338_350);
        super::page_out_own_code().expect("a second pass");
    }
}
