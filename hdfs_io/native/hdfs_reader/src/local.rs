//! Short-circuit local reads: when the reader runs on a host whose DataNode holds the file's blocks (a YARN
//! container beside its DataNode, the embedded cluster), read the block files from the local disk instead of
//! having the DataNode stream them over a socket. It is HDFS's own fast path for co-located readers, in the
//! "legacy" form (HDFS-2246) that needs no native library: the DataNode tells an allowed user
//! (`dfs.block.local-path-access.user`) where a block's data and checksum files are (getBlockLocalPathInfo), and
//! the client reads and checks them itself. The domain-socket form needs libhadoop on the DataNode, which the Maven
//! jars do not ship.
//!
//! Like Hadoop's client it is on when `dfs.client.read.shortcircuit` and `dfs.client.use.legacy.blockreader.local`
//! are both true, and checks the chunk checksums unless `dfs.client.read.shortcircuit.skip.checksum`.
//! TFOY_HDFS_SHORT_CIRCUIT=0/1 overrides the first two. Anything short of a plain local replica of every block
//! (a Kerberos cluster, a file being written, encryption, erasure coding, a DataNode elsewhere or refusing the
//! user, an unreadable block file) keeps the DataNode stream, and the reason is kept for `tfoy_hdfs_local_stats`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::rpc::{self, RpcClient, RpcError};

const RPC_TIMEOUT: Duration = Duration::from_secs(10); // each read and write
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const META_HEADER: u64 = 7; // version (u16), checksum type (u8), bytes per checksum (u32), all big-endian

#[derive(Clone, Copy)]
enum Sum {
    Crc32,
    Crc32c,
}

struct Checksums {
    meta: File,
    sum: Sum,
    chunk: u64,
}

struct LocalBlock {
    start: u64, // offset of the block's first byte in the file
    len: u64,
    id: u64,
    data: File,
    checksums: Option<Checksums>, // None: dfs.client.read.shortcircuit.skip.checksum, or a NULL checksum type
}

/// A file whose every block is read from a local replica.
pub struct LocalFile {
    blocks: Vec<LocalBlock>,
    scratch: Vec<u8>,
}

/// What the client configuration (HADOOP_CONF_DIR) says about short-circuit reads; loaded once per folder.
pub struct Settings {
    configured: bool,
    skip_checksum: bool,
    kerberos: bool,
    conf: HashMap<String, String>,
}

impl Settings {
    pub fn load() -> Settings {
        let conf = hadoop_conf();
        let flag = |k: &str| conf.get(k).map(|v| v.trim().eq_ignore_ascii_case("true")).unwrap_or(false);
        let configured = flag("dfs.client.read.shortcircuit") && flag("dfs.client.use.legacy.blockreader.local");
        let kerberos = conf.get("hadoop.security.authentication").is_some_and(|v| v.trim() == "kerberos");
        Settings { configured, skip_checksum: flag("dfs.client.read.shortcircuit.skip.checksum"), kerberos, conf }
    }

    /// The configuration's choice unless TFOY_HDFS_SHORT_CIRCUIT says otherwise (looked up at each open).
    pub fn enabled(&self) -> bool {
        match std::env::var("TFOY_HDFS_SHORT_CIRCUIT").ok().as_deref().map(str::trim) {
            Some("1") | Some("true") => true,
            Some("0") | Some("false") => false,
            _ => self.configured,
        }
    }

    /// NameNode RPC addresses for an hdfs:// authority: host:port as is, a bare host on 8020, or the NameNodes of
    /// an HA nameservice (dfs.ha.namenodes.<ns>, dfs.namenode.rpc-address.<ns>.<nn>).
    pub(crate) fn namenodes(&self, authority: &str) -> Vec<String> {
        if authority.contains(':') {
            return vec![authority.to_string()];
        }
        match self.conf.get(&format!("dfs.ha.namenodes.{authority}")) {
            Some(ids) => ids
                .split(',')
                .filter_map(|id| self.conf.get(&format!("dfs.namenode.rpc-address.{authority}.{}", id.trim())))
                .map(|a| a.trim().to_string())
                .collect(),
            None => vec![format!("{authority}:8020")],
        }
    }
}

impl Settings {
    /// A client configuration value (core-site.xml, hdfs-site.xml), trimmed.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.conf.get(key).map(|v| v.trim())
    }

    /// fs.permissions.umask-mode (octal, Hadoop's default 022): what Hadoop clients take from 0666 for files and
    /// 0777 for folders they create. A symbolic mode is not parsed and counts as the default.
    pub(crate) fn umask(&self) -> u32 {
        self.get("fs.permissions.umask-mode").and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0o022) & 0o777
    }

    /// A size as Hadoop's Configuration.getLongBytes reads it: bytes, or a whole number with a k, m, g, t, p or e
    /// suffix (binary, any case). None when unset; an error naming the key and the value when it is no size.
    pub(crate) fn bytes(&self, key: &str) -> Result<Option<u64>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let lower = value.to_ascii_lowercase();
        let (digits, shift) = match lower.char_indices().last() {
            Some((i, c)) if !c.is_ascii_digit() => match "kmgtpe".find(c) {
                Some(n) => (&lower[..i], 10 * (n as u32 + 1)),
                None => ("", 0),
            },
            _ => (lower.as_str(), 0),
        };
        digits.parse::<u64>().ok().and_then(|n| n.checked_mul(1u64 << shift)).map(Some).ok_or_else(|| {
            format!("{key} = '{value}' in the Hadoop configuration is not a size (bytes, or with k/m/g/t/p/e)")
        })
    }

    /// A whole number (dfs.replication); None when unset, an error naming the key and the value otherwise.
    pub(crate) fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.get(key)
            .map(|v| {
                v.parse::<T>().map_err(|_| format!("{key} = '{v}' in the Hadoop configuration is not a whole number"))
            })
            .transpose()
    }
}

/// core-site.xml and hdfs-site.xml from HADOOP_CONF_DIR (or $HADOOP_HOME/etc/hadoop), as hdfs-native reads them.
fn hadoop_conf() -> HashMap<String, String> {
    let dir = std::env::var("HADOOP_CONF_DIR")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HADOOP_HOME").map(|h| PathBuf::from(h).join("etc/hadoop")));
    let mut conf = HashMap::new();
    let Ok(dir) = dir else { return conf };
    for name in ["core-site.xml", "hdfs-site.xml"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let Ok(doc) = roxmltree::Document::parse(&text) else {
            continue;
        };
        for prop in doc.descendants().filter(|n| n.has_tag_name("property")) {
            let child = |tag: &str| prop.children().find(|n| n.has_tag_name(tag)).and_then(|n| n.text());
            if let (Some(k), Some(v)) = (child("name"), child("value")) {
                conf.insert(k.trim().to_string(), v.to_string());
            }
        }
    }
    conf
}

/// This host's addresses (a DataNode at one of them is local).
fn local_addresses() -> &'static HashSet<IpAddr> {
    static ADDRS: OnceLock<HashSet<IpAddr>> = OnceLock::new();
    ADDRS.get_or_init(|| {
        let mut out = HashSet::new();
        // SAFETY: getifaddrs fills a list we only read and then free
        unsafe {
            let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
            if libc::getifaddrs(&mut list) == 0 {
                let mut p = list;
                while !p.is_null() {
                    let sa = (*p).ifa_addr;
                    if !sa.is_null() {
                        match (*sa).sa_family as i32 {
                            libc::AF_INET => {
                                let a = &*(sa as *const libc::sockaddr_in);
                                out.insert(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                            }
                            libc::AF_INET6 => {
                                let a = &*(sa as *const libc::sockaddr_in6);
                                out.insert(IpAddr::from(a.sin6_addr.s6_addr));
                            }
                            _ => {}
                        }
                    }
                    p = (*p).ifa_next;
                }
                libc::freeifaddrs(list);
            }
        }
        out
    })
}

fn is_local(ip: &str) -> bool {
    ip.parse::<IpAddr>().map(|a| a.is_loopback() || local_addresses().contains(&a)).unwrap_or(false)
}

/// Idle RPC connections by server, protocol and user, reused by later opens as Hadoop's client reuses its own: an
/// open then costs its calls, not a TCP and connection-context handshake per server.
/// Also remembers where blocks' files are, so a file opened again (the next epoch) needs only the NameNode's call,
/// and which DataNodes refused a user, so they are not asked again.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<RpcClient>>>,
    paths: Mutex<HashMap<BlockKey, (String, String)>>, // -> the block's data and meta file
    refused: Mutex<HashSet<String>>,                   // "DataNode-ipc-address user"
}

type PoolKey = (String, &'static str, String); // address, protocol, user
type BlockKey = (String, u64, u64); // "DataNode-ipc-address user", block id, generation stamp

impl Pool {
    fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        addr: &str,
        protocol: &'static str,
        user: &str,
        method: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        let key = (addr.to_string(), protocol, user.to_string());
        let idle = self.idle.lock().unwrap().get_mut(&key).and_then(Vec::pop);
        if let Some(mut c) = idle {
            match c.call(method, req) {
                Ok(r) => {
                    self.idle.lock().unwrap().entry(key).or_default().push(c);
                    return Ok(r);
                }
                Err(RpcError::Io(_)) => {} // the server closed it while idle: a new connection below
                Err(e) => return Err(e),
            }
        }
        let mut c = RpcClient::connect(addr, protocol, user, CONNECT_TIMEOUT, RPC_TIMEOUT)?;
        let r = c.call(method, req)?;
        self.idle.lock().unwrap().entry(key).or_default().push(c);
        Ok(r)
    }
}

/// Why a file is not read locally.
pub type Fallback = String;

fn fallback(reason: impl Into<String>) -> Fallback {
    reason.into()
}

/// Opens every block of `path` (on the NameNode at `authority`) from its local replica, or says why not.
pub fn open(pool: &Pool, settings: &Settings, authority: &str, path: &str, user: &str) -> Result<LocalFile, Fallback> {
    if settings.kerberos {
        return Err(fallback("a Kerberos cluster (only SIMPLE authentication is spoken here)"));
    }
    let request = rpc::GetBlockLocationsRequest { src: path.to_string(), offset: 0, length: u64::MAX >> 1 };
    let mut last = fallback(format!("no NameNode address for {authority}"));
    let mut located = None;
    for nn in settings.namenodes(authority) {
        match pool.call::<_, rpc::GetBlockLocationsResponse>(
            &nn,
            rpc::NAMENODE_PROTOCOL,
            user,
            "getBlockLocations",
            &request,
        ) {
            Ok(r) => {
                located = r.locations;
                break;
            }
            Err(e) => last = fallback(format!("NameNode {nn}: {e}")),
        }
    }
    let Some(located) = located else {
        return Err(last);
    };
    if located.under_construction || !located.is_last_block_complete {
        return Err(fallback("the file is being written"));
    }
    if located.file_encryption_info.is_some() || located.ec_policy.is_some() {
        return Err(fallback("an encrypted or erasure-coded file"));
    }
    let mut blocks = Vec::with_capacity(located.blocks.len());
    for lb in &located.blocks {
        let len = lb.b.num_bytes.unwrap_or(0);
        let Some(dn) = lb.locs.iter().map(|l| &l.id).find(|id| is_local(&id.ip_addr)) else {
            return Err(fallback(format!("block {} has no replica on this host", lb.b.block_id)));
        };
        let ipc = format!("{}:{}", dn.ip_addr, dn.ipc_port);
        let key = format!("{ipc} {user}");
        if pool.refused.lock().unwrap().contains(&key) {
            return Err(format!("DataNode {ipc} refused user '{user}' before"));
        }
        let ask = || {
            let req = rpc::GetBlockLocalPathInfoRequest { block: lb.b.clone(), token: lb.block_token.clone() };
            match pool.call::<_, rpc::GetBlockLocalPathInfoResponse>(
                &ipc,
                rpc::DATANODE_PROTOCOL,
                user,
                "getBlockLocalPathInfo",
                &req,
            ) {
                Ok(info) => Ok((info.local_path, info.local_meta_path)),
                Err(RpcError::Remote(class, msg)) if class == "AccessControlException" => {
                    pool.refused.lock().unwrap().insert(key.clone());
                    Err(format!(
                        "DataNode {ipc} does not allow local reads by '{user}' ({msg}); the DataNode's \
                         dfs.block.local-path-access.user lists who may"
                    ))
                }
                Err(e) => Err(fallback(format!("DataNode {ipc}: {e}"))),
            }
        };
        let cache_key = (key.clone(), lb.b.block_id, lb.b.generation_stamp);
        let cached = pool.paths.lock().unwrap().get(&cache_key).cloned();
        let (data_path, meta_path, data) = match cached.map(|(d, m)| (File::open(&d), d, m)) {
            Some((Ok(data), d, m)) => (d, m, data),
            _ => {
                // not known, or moved since (a DataNode may move replicas between its disks): ask the DataNode
                let (d, m) = ask()?;
                let data = File::open(&d).map_err(|e| fallback(format!("block file {d}: {e}")))?;
                pool.paths.lock().unwrap().insert(cache_key, (d.clone(), m.clone()));
                (d, m, data)
            }
        };
        let size = data.metadata().map(|m| m.len()).unwrap_or(0);
        if size < len {
            return Err(fallback(format!("block file {data_path} holds {size} of {len} bytes")));
        }
        let checksums = if settings.skip_checksum {
            None
        } else {
            let meta = File::open(&meta_path).map_err(|e| fallback(format!("checksum file {meta_path}: {e}")))?;
            read_meta(meta, &meta_path)?
        };
        blocks.push(LocalBlock { start: lb.offset, len, id: lb.b.block_id, data, checksums });
    }
    let covered: u64 = blocks.iter().map(|b| b.len).sum();
    if covered != located.file_length {
        return Err(fallback(format!("blocks cover {covered} of {} bytes", located.file_length)));
    }
    Ok(LocalFile { blocks, scratch: Vec::new() })
}

fn read_meta(meta: File, path: &str) -> Result<Option<Checksums>, Fallback> {
    let mut head = [0u8; META_HEADER as usize];
    meta.read_exact_at(&mut head, 0).map_err(|e| fallback(format!("checksum file {path}: {e}")))?;
    let chunk = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as u64;
    let sum = match head[2] {
        0 => return Ok(None),
        1 => Sum::Crc32,
        2 => Sum::Crc32c,
        t => return Err(fallback(format!("checksum file {path}: checksum type {t} not known here"))),
    };
    if chunk == 0 {
        return Err(fallback(format!("checksum file {path}: 0 bytes per checksum")));
    }
    Ok(Some(Checksums { meta, sum, chunk }))
}

impl LocalFile {
    pub fn length(&self) -> u64 {
        self.blocks.last().map(|b| b.start + b.len).unwrap_or(0)
    }

    /// Fills `out` from file offset `pos` (fewer bytes only at the end), checking every chunk it touches.
    /// An error (a failed checksum, a vanished block file) is for the caller to retry through the DataNode.
    pub fn read(&mut self, pos: u64, out: &mut [u8]) -> Result<usize, String> {
        let mut got = 0;
        let length = self.length();
        while got < out.len() && pos + (got as u64) < length {
            let at = pos + got as u64;
            let i = self.blocks.partition_point(|b| b.start + b.len <= at);
            let b = &self.blocks[i];
            let within = at - b.start;
            let n = ((out.len() - got) as u64).min(b.len - within) as usize;
            let dest = &mut out[got..got + n];
            let io = |e: std::io::Error| format!("block {}: reading the local replica: {e}", b.id);
            match &b.checksums {
                None => b.data.read_exact_at(dest, within).map_err(io)?,
                Some(c) => {
                    // checksums cover whole chunks: read from the chunk boundary, via scratch when not aligned
                    let first = within / c.chunk * c.chunk;
                    let end = (within + n as u64).div_ceil(c.chunk) * c.chunk;
                    let end = end.min(b.len);
                    if first == within && end == within + n as u64 {
                        b.data.read_exact_at(dest, within).map_err(io)?;
                        verify(b, c, first, dest)?;
                    } else {
                        self.scratch.resize((end - first) as usize, 0);
                        b.data.read_exact_at(&mut self.scratch, first).map_err(io)?;
                        verify(b, c, first, &self.scratch)?;
                        let skip = (within - first) as usize;
                        dest.copy_from_slice(&self.scratch[skip..skip + n]);
                    }
                }
            }
            got += n;
        }
        Ok(got)
    }
}

/// Checks `data`, the block's bytes from `first` (a chunk boundary), against the checksum file.
fn verify(b: &LocalBlock, c: &Checksums, first: u64, data: &[u8]) -> Result<(), String> {
    let chunks = (data.len() as u64).div_ceil(c.chunk) as usize;
    let mut sums = vec![0u8; chunks * 4];
    c.meta
        .read_exact_at(&mut sums, META_HEADER + first / c.chunk * 4)
        .map_err(|e| format!("block {}: reading its checksums: {e}", b.id))?;
    for (k, piece) in data.chunks(c.chunk as usize).enumerate() {
        let want = u32::from_be_bytes([sums[4 * k], sums[4 * k + 1], sums[4 * k + 2], sums[4 * k + 3]]);
        let have = match c.sum {
            Sum::Crc32c => crc32c::crc32c(piece),
            Sum::Crc32 => crc32fast::hash(piece),
        };
        if have != want {
            let at = b.start + first + (k as u64) * c.chunk;
            return Err(format!("block {}: the local replica fails its checksum at file byte {at}", b.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A block file and its .meta file as a DataNode writes them: version 1, the checksum type, bytes per chunk,
    /// then one big-endian checksum per chunk.
    fn block(dir: &std::path::Path, data: &[u8], chunk: usize, sum: u8) -> LocalBlock {
        let (data_path, meta_path) = (dir.join("blk_1"), dir.join("blk_1_1001.meta"));
        std::fs::write(&data_path, data).unwrap();
        let mut meta = File::create(&meta_path).unwrap();
        meta.write_all(&[0, 1, sum]).unwrap();
        meta.write_all(&(chunk as u32).to_be_bytes()).unwrap();
        for piece in data.chunks(chunk) {
            let crc = if sum == 2 { crc32c::crc32c(piece) } else { crc32fast::hash(piece) };
            meta.write_all(&crc.to_be_bytes()).unwrap();
        }
        let meta = File::open(&meta_path).unwrap();
        let checksums = read_meta(meta, "meta").ok().unwrap();
        LocalBlock { start: 0, len: data.len() as u64, id: 1, data: File::open(&data_path).unwrap(), checksums }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tfoy-local-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_any_range_and_checks_it() {
        let dir = tmp("ranges");
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for sum in [1, 2] {
            let mut file = LocalFile { blocks: vec![block(&dir, &data, 512, sum)], scratch: Vec::new() };
            for (pos, n) in [(0, 512), (0, 5000), (3, 10), (510, 5), (1024, 1500), (4999, 10), (5000, 1)] {
                let mut out = vec![0u8; n];
                let got = file.read(pos as u64, &mut out).unwrap();
                assert_eq!(&out[..got], &data[pos.min(5000)..(pos + n).min(5000)], "sum {sum} pos {pos} n {n}");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_flipped_byte_fails_its_chunk() {
        let dir = tmp("rot");
        let data = vec![42u8; 3000];
        let mut file = LocalFile { blocks: vec![block(&dir, &data, 512, 2)], scratch: Vec::new() };
        let mut rotten = data.clone();
        rotten[2000] ^= 1;
        std::fs::write(dir.join("blk_1"), &rotten).unwrap();
        let mut out = vec![0u8; 100];
        assert!(file.read(0, &mut out).is_ok(), "chunks before the rotten one still pass");
        let err = file.read(1990, &mut out).unwrap_err();
        assert!(err.contains("fails its checksum at file byte 1536"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sizes_as_hadoop_reads_them() {
        let conf: HashMap<String, String> =
            [("a", "134217728"), ("b", "128m"), ("c", " 1G "), ("d", "12x"), ("e", "m"), ("f", "2"), ("g", "3.5")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let s = Settings { configured: false, skip_checksum: false, kerberos: false, conf };
        assert_eq!(s.bytes("a"), Ok(Some(128 << 20)));
        assert_eq!(s.bytes("b"), Ok(Some(128 << 20)));
        assert_eq!(s.bytes("c"), Ok(Some(1 << 30)));
        assert_eq!(s.bytes("missing"), Ok(None));
        for bad in ["d", "e"] {
            assert!(s.bytes(bad).unwrap_err().contains(&format!("{bad} = '")), "{bad}");
        }
        assert_eq!(s.number::<u32>("f"), Ok(Some(2)));
        assert!(s.number::<u32>("g").unwrap_err().contains("g = '3.5'"));
    }

    #[test]
    fn namenodes_of_a_nameservice() {
        let conf: HashMap<String, String> = [
            ("dfs.ha.namenodes.prod", "nn1, nn2"),
            ("dfs.namenode.rpc-address.prod.nn1", "a.example:8020"),
            ("dfs.namenode.rpc-address.prod.nn2", "b.example:8020"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings { configured: true, skip_checksum: false, kerberos: false, conf };
        assert_eq!(settings.namenodes("prod"), ["a.example:8020", "b.example:8020"]);
        assert_eq!(settings.namenodes("nn.example:9000"), ["nn.example:9000"]);
        assert_eq!(settings.namenodes("nn.example"), ["nn.example:8020"]);
    }
}
