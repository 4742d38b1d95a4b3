//! Returning freed heap to the operating system. Listing 30,000 pods decodes them whole before
//! the cache shrinks them; glibc keeps the freed pages, so resident memory would stay at the
//! peak. Trimming after a relist, and now and then, keeps it near what the cache holds.

/// Gives free heap pages back to the OS (glibc only; elsewhere a no-op).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
