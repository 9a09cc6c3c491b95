//! A network namespace joined to this one by a veth pair: "another host" on this machine,
//! for benchmarks whose client must not be on the server's loopback (a daemon treats a
//! client on its own host differently: `http.sendfile: auto`). Programs are started inside
//! it with `ip netns exec`, which execs them (their PID is the child's), and this process's
//! threads can join it ([`Netns::enter`]). Needs root and iproute2's `ip`; removed (with its
//! veth pair) when dropped.

use std::process::Command;

pub struct Netns {
    pub name: String,
    /// This side's address on the pair.
    pub host_ip: &'static str,
    /// The namespace's address: where its servers listen.
    pub ns_ip: &'static str,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip (iproute2) could not be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// A namespace of this process's own (`bench-<pid>`), at 10.231.0.2 behind a veth pair
    /// (MTU 1500, as on an Ethernet network) whose other end is 10.231.0.1 here.
    pub fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let ns = Netns {
            name: format!("bench-{pid}"),
            host_ip: "10.231.0.1",
            ns_ip: "10.231.0.2",
        };
        let (here, there) = (format!("vb{pid}a"), format!("vb{pid}b"));
        remove_left_behind();
        ip(&["netns", "add", &ns.name])?;
        // From here on, dropping `ns` removes the namespace and the pair with it.
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there])?;
        ip(&["link", "set", &there, "netns", &ns.name])?;
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &here])?;
        ip(&["link", "set", &here, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &there])?;
        inside(&["link", "set", &there, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Moves the calling thread (only it) into the namespace: sockets it opens afterwards
    /// are the namespace's.
    pub fn enter(&self) -> std::io::Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.name))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Namespaces of benchmarks that are gone (killed before they could remove theirs), whose
/// addresses would clash with a new one's.
fn remove_left_behind() {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("bench-")
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}
