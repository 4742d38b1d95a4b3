//! A fault-injecting HTTP proxy in front of moto, for what moto never does: throttle, fail with
//! 5xx, or report insufficient capacity for some CreateFleet overrides.
//!
//! It answers one request per connection (`Connection: close`), matches requests by their EC2
//! `Action`, and either answers with an injected EC2 error, rewrites a CreateFleet (drops the
//! overrides of types "without capacity" and lists them in `errorSet`, as EC2 does), or forwards
//! the request untouched.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with an EC2 error instead of forwarding.
    Error { status: u16, code: &'static str },
    /// CreateFleet: these instance types have no capacity.
    NoCapacity { instance_types: Vec<String> },
}

#[derive(Debug)]
struct Rule {
    action: String,
    /// `None`: every matching request.
    remaining: Option<usize>,
    fault: Fault,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    seen: Vec<String>,
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// endpoint")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    // A failed exchange shows up in the test as an SDK error.
                    let _ = serve(stream, &upstream, &state);
                });
            }
        });
        FaultProxy { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` requests of `action` (`None`: to all of them).
    pub fn inject(&self, action: &str, fault: Fault, times: Option<usize>) {
        self.shared.lock().expect("proxy state").rules.push(Rule {
            action: action.to_string(),
            remaining: times,
            fault,
        });
    }

    /// Drops every fault not yet applied.
    #[allow(dead_code)] // The chaos harness's; the AWS tests inject one fault at a time.
    pub fn clear(&self) {
        self.shared.lock().expect("proxy state").rules.clear();
    }

    /// How many requests of `action` reached the proxy.
    pub fn count(&self, action: &str) -> usize {
        let shared = self.shared.lock().expect("proxy state");
        shared.seen.iter().filter(|a| *a == action).count()
    }
}

struct Message {
    head: String,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Message> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length = content_length(&head).unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body = buffer[end + 4..].to_vec();
            return Ok(Message { head, body });
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before a request"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The head with `Content-Length` set to `length` and `Connection: close`.
fn with_length(head: &str, length: usize) -> String {
    let mut lines: Vec<String> = head
        .split("\r\n")
        .filter(|line| {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            name != "content-length" && name != "connection"
        })
        .map(str::to_string)
        .collect();
    lines.push(format!("Content-Length: {length}"));
    lines.push("Connection: close".to_string());
    lines.join("\r\n")
}

fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<Message> {
    let mut connection = TcpStream::connect(upstream)?;
    connection.write_all(with_length(head, body.len()).as_bytes())?;
    connection.write_all(b"\r\n\r\n")?;
    connection.write_all(body)?;
    let mut response = Vec::new();
    connection.read_to_end(&mut response)?;
    let end = find(&response, b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("upstream sent no header"))?;
    Ok(Message {
        head: String::from_utf8_lossy(&response[..end]).to_string(),
        body: response[end + 4..].to_vec(),
    })
}

fn reply(stream: &mut TcpStream, status_line: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "{status_line}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn ec2_error(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
    )
}

fn serve(mut stream: TcpStream, upstream: &str, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let request = read_request(&mut stream)?;
    let form = parse_form(&request.body);
    let action = form
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let fault = {
        let mut shared = shared.lock().expect("proxy state");
        shared.seen.push(action.clone());
        let rule = shared
            .rules
            .iter_mut()
            .find(|r| r.action == action && r.remaining.is_none_or(|n| n > 0));
        rule.map(|r| {
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            r.fault.clone()
        })
    };
    match fault {
        Some(Fault::Error { status, code }) => {
            let reason = if status >= 500 {
                "Server Error"
            } else {
                "Client Error"
            };
            reply(
                &mut stream,
                &format!("HTTP/1.1 {status} {reason}"),
                ec2_error(code).as_bytes(),
            )
        }
        Some(Fault::NoCapacity { instance_types }) => {
            let (kept, dropped) = drop_overrides(&form, &instance_types);
            let errors = error_set(&dropped, &form);
            if !kept.iter().any(|(k, _)| k.contains(".Overrides.")) {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>proxy</requestId><fleetId>fleet-proxy</fleetId>{errors}<fleetInstanceSet/></CreateFleetResponse>"
                );
                return reply(&mut stream, "HTTP/1.1 200 OK", body.as_bytes());
            }
            let body = encode_form(&kept);
            let response = forward(upstream, &request.head, body.as_bytes())?;
            let text = String::from_utf8_lossy(&response.body).replace(
                "</CreateFleetResponse>",
                &format!("{errors}</CreateFleetResponse>"),
            );
            let status = response
                .head
                .lines()
                .next()
                .unwrap_or("HTTP/1.1 200 OK")
                .to_string();
            reply(&mut stream, &status, text.as_bytes())
        }
        None => {
            let response = forward(upstream, &request.head, &request.body)?;
            stream.write_all(with_length(&response.head, response.body.len()).as_bytes())?;
            stream.write_all(b"\r\n\r\n")?;
            stream.write_all(&response.body)?;
            stream.flush()
        }
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn encode_form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One dropped override: its fields by name.
type Override = BTreeMap<String, String>;

/// The form without the overrides of `types` (the rest renumbered), and the dropped ones.
fn drop_overrides(
    form: &[(String, String)],
    types: &[String],
) -> (Vec<(String, String)>, Vec<Override>) {
    // (config, override index) → fields, in index order.
    let mut overrides: BTreeMap<(u32, u32), Override> = BTreeMap::new();
    let mut rest = Vec::new();
    for (key, value) in form {
        let parts: Vec<&str> = key.split('.').collect();
        if let ["LaunchTemplateConfigs", c, "Overrides", o, field] = parts[..]
            && let (Ok(c), Ok(o)) = (c.parse::<u32>(), o.parse::<u32>())
        {
            overrides
                .entry((c, o))
                .or_default()
                .insert(field.to_string(), value.clone());
        } else {
            rest.push((key.clone(), value.clone()));
        }
    }
    let mut dropped = Vec::new();
    let mut next: BTreeMap<u32, u32> = BTreeMap::new();
    for ((config, _), fields) in overrides {
        if fields
            .get("InstanceType")
            .is_some_and(|t| types.contains(t))
        {
            dropped.push(fields);
            continue;
        }
        let index = next.entry(config).or_insert(0);
        *index += 1;
        for (field, value) in fields {
            rest.push((
                format!("LaunchTemplateConfigs.{config}.Overrides.{index}.{field}"),
                value,
            ));
        }
    }
    (rest, dropped)
}

fn error_set(dropped: &[Override], form: &[(String, String)]) -> String {
    let lifecycle = form
        .iter()
        .find(|(k, _)| k == "TargetCapacitySpecification.DefaultTargetCapacityType")
        .map(|(_, v)| v.as_str())
        .unwrap_or("on-demand");
    let field = |o: &Override, name: &str| o.get(name).cloned().unwrap_or_default();
    let items: String = dropped
        .iter()
        .map(|o| {
            format!(
                "<item><launchTemplateAndOverrides><overrides><instanceType>{}</instanceType><subnetId>{}</subnetId><availabilityZone>{}</availabilityZone></overrides></launchTemplateAndOverrides><lifecycle>{lifecycle}</lifecycle><errorCode>InsufficientInstanceCapacity</errorCode><errorMessage>We currently do not have sufficient {} capacity in the Availability Zone you requested.</errorMessage></item>",
                field(o, "InstanceType"),
                field(o, "SubnetId"),
                field(o, "AvailabilityZone"),
                field(o, "InstanceType"),
            )
        })
        .collect();
    format!("<errorSet>{items}</errorSet>")
}
