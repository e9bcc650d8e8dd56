//! Raising the open-file limit: every host costs a few descriptors (mux socket, stdio pipes).

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new `(soft, hard)` limits.
/// Call once at startup, before connecting to many hosts.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let (soft, hard) = super::raise_nofile_limit().expect("rlimit calls work");
        assert_eq!(soft, hard);
        let (again_soft, again_hard) = super::raise_nofile_limit().expect("idempotent");
        assert_eq!((again_soft, again_hard), (soft, hard));
    }
}
