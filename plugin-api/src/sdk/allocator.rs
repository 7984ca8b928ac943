//! A global allocator (feature `mimalloc`; the host and the bundled plugins use it): mimalloc,
//! entered through its plain `malloc` for the layouts that need no more than its natural
//! alignment.
//!
//! The `mimalloc` crate's `GlobalAlloc` calls `mi_malloc_aligned` for every layout. In
//! mimalloc's v3 line that path checks each block's alignment and sends every block over
//! 1 KiB (hyper's read buffer, a response body, a serialised event list) through its generic
//! aligned path. A small request allocates ~70 times, so that cost ~5 % of its instructions
//! (P1, callgrind, docs/benchmarks.md). `mi_malloc` returns blocks aligned to the machine
//! word at least (mimalloc's size classes are whole words), which covers almost every Rust
//! layout; larger alignments keep the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// What `mi_malloc` guarantees for any size: its size classes are multiples of a word.
const WORD_ALIGN: usize = std::mem::size_of::<usize>();

pub struct MiMalloc;

fn plain(align: usize) -> bool {
    align <= WORD_ALIGN
}

// SAFETY: every path returns mimalloc memory of at least the layout's size and alignment
// (`plain` layouts: word alignment is all they need), and everything is freed by `mi_free`,
// which takes any mimalloc block.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; `layout` has a non-zero size (GlobalAlloc's contract).
        unsafe {
            if plain(layout.align()) {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align()) {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; a moved block keeps the
        // alignment its layout needs, as in `alloc`.
        unsafe {
            if plain(layout.align()) {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size from 1 byte to 64 KiB, at every alignment up to 4 KiB, comes back aligned,
    /// writable, zeroed when asked, and keeps its bytes when grown or shrunk.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = MiMalloc;
        let sizes = (1..=300).chain([511, 512, 1023, 1024, 1025, 4095, 4096, 65536]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xAB, size);
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xAB));
                    let bigger = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = a.realloc(grown, bigger, size.div_ceil(2));
                    assert_eq!(shrunk as usize % align, 0, "shrunk {size} align {align}");
                    assert!((0..size.div_ceil(2)).all(|i| *shrunk.add(i) == 0xAB));
                    a.dealloc(
                        shrunk,
                        Layout::from_size_align(size.div_ceil(2), align).unwrap(),
                    );
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
