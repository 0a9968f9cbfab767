//! Who this process is, for ledger claims, and whether another claimant is still alive: a claim whose process
//! died on this host is taken over at once instead of after `schedule.stale_run_secs`.

use std::path::Path;

use mcbot_schedules::Liveness;
use mcbot_stages::ports::Claimant;

/// Liveness from the operating system: a claimant on this host is dead when no process has its pid.
#[derive(Debug, Clone)]
pub struct OsLiveness {
    me: Claimant,
}

impl OsLiveness {
    /// This process, named by its pid and the host name.
    pub fn current() -> Self {
        Self { me: Claimant { pid: std::process::id(), host: host_name() } }
    }
}

/// The host name (`/proc/sys/kernel/hostname`, then `$HOSTNAME`), or `unknown`: an unknown host never matches
/// another claimant's, so no claim is taken over on a guess.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Liveness for OsLiveness {
    fn me(&self) -> Claimant {
        self.me.clone()
    }

    /// Only on this host, only where `/proc` exists, and never for this very process.
    fn is_dead(&self, claimant: &Claimant) -> bool {
        claimant.host == self.me.host
            && self.me.host != "unknown"
            && claimant.pid != self.me.pid
            && Path::new("/proc/self").exists()
            && !Path::new(&format!("/proc/{}", claimant.pid)).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pid_on_this_host_is_dead_and_a_live_one_is_not() {
        let os = OsLiveness::current();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Claimant { pid, host: os.me().host };
        assert!(os.is_dead(&gone), "a reaped child's pid is gone");
        assert!(!os.is_dead(&os.me()), "this process is alive");
        assert!(!os.is_dead(&Claimant { pid, host: "elsewhere".into() }), "another host is never judged");
    }
}
