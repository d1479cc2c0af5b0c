//! The two Hadoop RPC calls short-circuit reads need (local.rs): the NameNode's getBlockLocations and a
//! DataNode's getBlockLocalPathInfo. hdfs-native speaks Hadoop RPC but keeps its connection and protobuf types
//! private, so this is a minimal blocking client: protocol version 9, SIMPLE authentication only (local.rs does not
//! try on a Kerberos cluster), one call at a time, every socket operation under a timeout. Message fields are the
//! subset of the Hadoop .proto files used here, with the same tags; prost skips the fields left out.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use prost::Message;

pub const NAMENODE_PROTOCOL: &str = "org.apache.hadoop.hdfs.protocol.ClientProtocol";
pub const DATANODE_PROTOCOL: &str = "org.apache.hadoop.hdfs.protocol.ClientDatanodeProtocol";

// ---- RPC framing (RpcHeader.proto, IpcConnectionContext.proto, ProtobufRpcEngine.proto) ------------------------

#[derive(Clone, PartialEq, Message)]
struct RpcRequestHeader {
    #[prost(int32, optional, tag = "1")]
    rpc_kind: Option<i32>, // RPC_PROTOCOL_BUFFER = 2
    #[prost(int32, optional, tag = "2")]
    rpc_op: Option<i32>, // RPC_FINAL_PACKET = 0
    #[prost(sint32, required, tag = "3")]
    call_id: i32,
    #[prost(bytes = "vec", required, tag = "4")]
    client_id: Vec<u8>,
    #[prost(sint32, optional, tag = "5")]
    retry_count: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct RpcResponseHeader {
    #[prost(uint32, required, tag = "1")]
    call_id: u32,
    #[prost(int32, required, tag = "2")]
    status: i32, // SUCCESS = 0, ERROR = 1, FATAL = 2
    #[prost(string, optional, tag = "4")]
    exception_class_name: Option<String>,
    #[prost(string, optional, tag = "5")]
    error_msg: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct UserInformation {
    #[prost(string, optional, tag = "1")]
    effective_user: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct IpcConnectionContext {
    #[prost(message, optional, tag = "2")]
    user_info: Option<UserInformation>,
    #[prost(string, optional, tag = "3")]
    protocol: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct RequestHeader {
    #[prost(string, required, tag = "1")]
    method_name: String,
    #[prost(string, required, tag = "2")]
    declaring_class_protocol_name: String,
    #[prost(uint64, required, tag = "3")]
    client_protocol_version: u64,
}

// ---- HDFS messages (hdfs.proto, Security.proto, ClientNamenodeProtocol.proto, ClientDatanodeProtocol.proto) ----

#[derive(Clone, PartialEq, Message)]
pub struct ExtendedBlock {
    #[prost(string, required, tag = "1")]
    pub pool_id: String,
    #[prost(uint64, required, tag = "2")]
    pub block_id: u64,
    #[prost(uint64, required, tag = "3")]
    pub generation_stamp: u64,
    #[prost(uint64, optional, tag = "4")]
    pub num_bytes: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Token {
    #[prost(bytes = "vec", required, tag = "1")]
    pub identifier: Vec<u8>,
    #[prost(bytes = "vec", required, tag = "2")]
    pub password: Vec<u8>,
    #[prost(string, required, tag = "3")]
    pub kind: String,
    #[prost(string, required, tag = "4")]
    pub service: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct DatanodeId {
    #[prost(string, required, tag = "1")]
    pub ip_addr: String,
    #[prost(string, required, tag = "2")]
    pub host_name: String,
    #[prost(uint32, required, tag = "6")]
    pub ipc_port: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct DatanodeInfo {
    #[prost(message, required, tag = "1")]
    pub id: DatanodeId,
}

#[derive(Clone, PartialEq, Message)]
pub struct LocatedBlock {
    #[prost(message, required, tag = "1")]
    pub b: ExtendedBlock,
    #[prost(uint64, required, tag = "2")]
    pub offset: u64,
    #[prost(message, repeated, tag = "3")]
    pub locs: Vec<DatanodeInfo>,
    #[prost(message, required, tag = "5")]
    pub block_token: Token,
}

#[derive(Clone, PartialEq, Message)]
pub struct LocatedBlocks {
    #[prost(uint64, required, tag = "1")]
    pub file_length: u64,
    #[prost(message, repeated, tag = "2")]
    pub blocks: Vec<LocatedBlock>,
    #[prost(bool, required, tag = "3")]
    pub under_construction: bool,
    #[prost(bool, required, tag = "5")]
    pub is_last_block_complete: bool,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub file_encryption_info: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub ec_policy: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetBlockLocationsRequest {
    #[prost(string, required, tag = "1")]
    pub src: String,
    #[prost(uint64, required, tag = "2")]
    pub offset: u64,
    #[prost(uint64, required, tag = "3")]
    pub length: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetBlockLocationsResponse {
    #[prost(message, optional, tag = "1")]
    pub locations: Option<LocatedBlocks>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetBlockLocalPathInfoRequest {
    #[prost(message, required, tag = "1")]
    pub block: ExtendedBlock,
    #[prost(message, required, tag = "2")]
    pub token: Token,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetBlockLocalPathInfoResponse {
    #[prost(string, required, tag = "2")]
    pub local_path: String,
    #[prost(string, required, tag = "3")]
    pub local_meta_path: String,
}

// ---- the client ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub enum RpcError {
    /// The server ran the call and it failed: the Java exception class (short name) and the message's first line.
    Remote(String, String),
    /// Connecting, a timeout, a refused connection or a malformed answer.
    Io(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Remote(class, msg) => write!(f, "{class}: {msg}"),
            RpcError::Io(msg) => f.write_str(msg),
        }
    }
}

pub struct RpcClient {
    addr: String,
    stream: TcpStream,
    protocol: &'static str,
    client_id: Vec<u8>,
    next_call: i32,
}

impl RpcClient {
    /// Connects to `addr` (host:port) for `protocol` as `user`; the timeouts bound the connect and each read/write.
    pub fn connect(
        addr: &str,
        protocol: &'static str,
        user: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let io = |what: &str, e: std::io::Error| RpcError::Io(format!("{addr}: {what}: {e}"));
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| io("cannot resolve", e))?
            .next()
            .ok_or_else(|| RpcError::Io(format!("{addr}: no address")))?;
        let stream = TcpStream::connect_timeout(&sock, connect_timeout).map_err(|e| io("cannot connect", e))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| io("socket", e))?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| io("socket", e))?;
        stream.set_nodelay(true).map_err(|e| io("socket", e))?;
        let mut client_id = vec![0u8; 16];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        client_id[..8].copy_from_slice(&(now.as_nanos() as u64).to_le_bytes());
        client_id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        let mut client = RpcClient { addr: addr.to_string(), stream, protocol, client_id, next_call: 0 };
        // "hrpc", version 9, service class 0, auth protocol NONE (SIMPLE authentication, no SASL)
        client.stream.write_all(b"hrpc\x09\x00\x00").map_err(|e| io("handshake", e))?;
        let context = IpcConnectionContext {
            user_info: Some(UserInformation { effective_user: Some(user.to_string()) }),
            protocol: Some(protocol.to_string()),
        };
        client.send(-3, &[&context.encode_length_delimited_to_vec()])?;
        Ok(client)
    }

    fn send(&mut self, call_id: i32, parts: &[&[u8]]) -> Result<(), RpcError> {
        let header = RpcRequestHeader {
            rpc_kind: Some(2),
            rpc_op: Some(0),
            call_id,
            client_id: self.client_id.clone(),
            retry_count: Some(-1),
        }
        .encode_length_delimited_to_vec();
        let total = header.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut frame = Vec::with_capacity(4 + total);
        frame.extend_from_slice(&(total as u32).to_be_bytes());
        frame.extend_from_slice(&header);
        for part in parts {
            frame.extend_from_slice(part);
        }
        self.stream.write_all(&frame).map_err(|e| RpcError::Io(format!("{}: sending: {e}", self.addr)))
    }

    /// Calls `method` of the connection's protocol and waits (under the timeout) for its answer.
    pub fn call<Req: Message, Resp: Message + Default>(&mut self, method: &str, req: &Req) -> Result<Resp, RpcError> {
        let call_id = self.next_call;
        self.next_call += 1;
        let header = RequestHeader {
            method_name: method.to_string(),
            declaring_class_protocol_name: self.protocol.to_string(),
            client_protocol_version: 1,
        };
        self.send(call_id, &[&header.encode_length_delimited_to_vec(), &req.encode_length_delimited_to_vec()])?;
        let bad = |what: String| RpcError::Io(format!("{}: {method}: {what}", self.addr));
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| bad(format!("no answer: {e}")))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 256 << 20 {
            return Err(bad(format!("implausible answer of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).map_err(|e| bad(format!("short answer: {e}")))?;
        let mut buf = &body[..];
        let head = RpcResponseHeader::decode_length_delimited(&mut buf).map_err(|e| bad(e.to_string()))?;
        if head.status != 0 {
            let class = head.exception_class_name.unwrap_or_default();
            let short = class.rsplit('.').next().unwrap_or(&class).to_string();
            let msg = head.error_msg.unwrap_or_default();
            return Err(RpcError::Remote(short, msg.lines().next().unwrap_or("").trim().to_string()));
        }
        if head.call_id != call_id as u32 {
            return Err(bad(format!("answer to call {} while waiting for {call_id}", head.call_id)));
        }
        Resp::decode_length_delimited(&mut buf).map_err(|e| bad(e.to_string()))
    }
}
