//! CHAP for the login phase (RFC 7143 §12.1.3, RFC 1994). CHAP_A values from the
//! IANA PPP authentication algorithms registry: 5 MD5, 6 SHA-1, 7 SHA-256, 8
//! SHA3-256.
//!
//! ```text
//!  I: AuthMethod=CHAP,None   T: AuthMethod=CHAP
//!  I: CHAP_A=5,7             T: CHAP_A=7 CHAP_I=<id> CHAP_C=0x<challenge>
//!  I: CHAP_N=<user> CHAP_R=0x<H(id || secret || challenge)>
//!     [CHAP_I=<id2> CHAP_C=0x<challenge2>: mutual]
//!                            T: [CHAP_N=<target user> CHAP_R=0x<H(id2 || tsecret || c2)>]
//! ```
//!
//! The exchange is driven by [`Chap`], owned by the login negotiator; the random
//! identifier and challenge come from a [`ChapSource`] the daemon injects (the OS
//! RNG), so tests are deterministic. Secrets never print: [`Secret`]'s `Debug` is
//! redacted.

use base64::Engine;
use md5::Digest;

/// A CHAP secret: bytes that never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A user name and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: Secret,
}

/// What a login must prove: the initiator's credentials, and the target's own for
/// mutual CHAP when the initiator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapPolicy {
    pub initiator: Credentials,
    pub target: Option<Credentials>,
}

/// CHAP_A algorithms, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha3_256 = 8,
    Sha256 = 7,
    Sha1 = 6,
    Md5 = 5,
}

impl Algorithm {
    const PREFERENCE: [Algorithm; 4] = [
        Algorithm::Sha3_256,
        Algorithm::Sha256,
        Algorithm::Sha1,
        Algorithm::Md5,
    ];

    pub fn from_code(c: u32) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|a| *a as u32 == c)
    }

    /// The strongest algorithm of a CHAP_A list this target implements.
    pub fn choose(offered: &str) -> Option<Self> {
        let codes: Vec<u32> = offered
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        Self::PREFERENCE
            .into_iter()
            .find(|a| codes.contains(&(*a as u32)))
    }

    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 | Algorithm::Sha3_256 => 32,
        }
    }

    /// H(identifier || secret || challenge) (RFC 1994 §4.1).
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn h<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([id]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            Algorithm::Md5 => h::<md5::Md5>(id, secret, challenge),
            Algorithm::Sha1 => h::<sha1::Sha1>(id, secret, challenge),
            Algorithm::Sha256 => h::<sha2::Sha256>(id, secret, challenge),
            Algorithm::Sha3_256 => h::<sha3::Sha3_256>(id, secret, challenge),
        }
    }
}

/// A binary key value (RFC 7143 §6.1): `0x`/`0X` hex or `0b`/`0B` base64.
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    let (prefix, body) = (v.get(..2)?, v.get(2..)?);
    match prefix {
        "0x" | "0X" => {
            let body = if body.len() % 2 == 1 {
                format!("0{body}")
            } else {
                body.to_owned()
            };
            (0..body.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(body.get(i..i + 2)?, 16).ok())
                .collect()
        }
        "0b" | "0B" => base64::engine::general_purpose::STANDARD.decode(body).ok(),
        _ => None,
    }
}

pub fn encode_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Where identifiers and challenges come from.
pub trait ChapSource: Send + std::fmt::Debug {
    fn fill(&mut self, buf: &mut [u8]);
}

/// Why a CHAP exchange failed (for the log; the initiator sees 02/01 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapFailure {
    /// The initiator does not offer CHAP, but this login requires it.
    NotOffered,
    /// CHAP_A offers none of MD5, SHA-1, SHA-256, SHA3-256.
    NoAlgorithm,
    /// A second CHAP_A, or CHAP keys out of order (CHAP_N/CHAP_R before the
    /// challenge), or keys after the exchange ended.
    OutOfOrder,
    /// CHAP_N is not the configured user.
    WrongUser,
    /// CHAP_R is not the expected response (wrong secret).
    WrongResponse,
    /// Malformed CHAP_R, CHAP_I or CHAP_C.
    Malformed,
    /// The initiator asked the target to authenticate itself (mutual), but no
    /// target secret is configured.
    MutualNotConfigured,
    /// The initiator's challenge is the one the target sent (a reflection attack).
    Reflected,
    /// The login tried to leave the security stage before authenticating.
    Skipped,
}

#[derive(Debug)]
enum State {
    /// Waiting for AuthMethod.
    Start,
    /// AuthMethod=CHAP answered; waiting for CHAP_A.
    Algorithm,
    /// Challenge sent; waiting for CHAP_N and CHAP_R.
    Response {
        alg: Algorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    Done,
    /// A step failed: nothing more is accepted.
    Failed,
}

/// One login's CHAP exchange, as the target.
#[derive(Debug)]
pub struct Chap {
    policy: ChapPolicy,
    state: State,
}

/// The keys CHAP consumes from a Login Request.
pub const KEYS: [&str; 5] = ["CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"];

impl Chap {
    pub fn new(policy: ChapPolicy) -> Self {
        Self {
            policy,
            state: State::Start,
        }
    }

    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The answer to AuthMethod: CHAP if offered.
    pub fn auth_method(&mut self, offered: &str) -> Result<&'static str, ChapFailure> {
        if !matches!(self.state, State::Start) {
            self.state = State::Failed;
            return Err(ChapFailure::OutOfOrder);
        }
        if offered.split(',').any(|m| m.trim() == "CHAP") {
            self.state = State::Algorithm;
            Ok("CHAP")
        } else {
            self.state = State::Failed;
            Err(ChapFailure::NotOffered)
        }
    }

    /// Handles the CHAP keys of one Login Request (`get` looks a key up) and
    /// returns the keys to answer with. After a failure nothing more is accepted.
    pub fn step(
        &mut self,
        get: &dyn Fn(&str) -> Option<String>,
        rng: &mut dyn ChapSource,
    ) -> Result<Vec<(&'static str, String)>, ChapFailure> {
        let r = self.step_inner(get, rng);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn step_inner(
        &mut self,
        get: &dyn Fn(&str) -> Option<String>,
        rng: &mut dyn ChapSource,
    ) -> Result<Vec<(&'static str, String)>, ChapFailure> {
        if matches!(self.state, State::Failed) {
            return Err(ChapFailure::OutOfOrder);
        }
        let (a, i, c, n, r) = (
            get("CHAP_A"),
            get("CHAP_I"),
            get("CHAP_C"),
            get("CHAP_N"),
            get("CHAP_R"),
        );
        if a.is_none() && i.is_none() && c.is_none() && n.is_none() && r.is_none() {
            return Ok(Vec::new());
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Algorithm => {
                let (Some(a), None, None, None, None) = (a, &i, &c, &n, &r) else {
                    return Err(ChapFailure::OutOfOrder);
                };
                let alg = Algorithm::choose(&a).ok_or(ChapFailure::NoAlgorithm)?;
                let mut id = [0u8; 1];
                rng.fill(&mut id);
                let mut challenge = vec![0u8; alg.digest_len().max(16)];
                rng.fill(&mut challenge);
                let out = vec![
                    ("CHAP_A", (alg as u32).to_string()),
                    ("CHAP_I", id[0].to_string()),
                    ("CHAP_C", encode_hex(&challenge)),
                ];
                self.state = State::Response {
                    alg,
                    id: id[0],
                    challenge,
                };
                Ok(out)
            }
            State::Response { alg, id, challenge } => {
                if a.is_some() {
                    return Err(ChapFailure::OutOfOrder);
                }
                let (Some(n), Some(r)) = (n, r) else {
                    return Err(ChapFailure::OutOfOrder);
                };
                let got = decode_binary(&r).ok_or(ChapFailure::Malformed)?;
                if n != self.policy.initiator.user {
                    return Err(ChapFailure::WrongUser);
                }
                let want = alg.response(id, self.policy.initiator.secret.expose(), &challenge);
                let equal = got.len() == want.len()
                    && got.iter().zip(&want).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
                if !equal {
                    return Err(ChapFailure::WrongResponse);
                }
                let mut out = Vec::new();
                match (i, c) {
                    (None, None) => {}
                    (Some(i), Some(c)) => {
                        let Some(target) = &self.policy.target else {
                            return Err(ChapFailure::MutualNotConfigured);
                        };
                        let id2: u8 = i.trim().parse().map_err(|_| ChapFailure::Malformed)?;
                        let c2 = decode_binary(&c).ok_or(ChapFailure::Malformed)?;
                        if c2.is_empty() {
                            return Err(ChapFailure::Malformed);
                        }
                        if c2 == challenge {
                            return Err(ChapFailure::Reflected);
                        }
                        out.push(("CHAP_N", target.user.clone()));
                        out.push((
                            "CHAP_R",
                            encode_hex(&alg.response(id2, target.secret.expose(), &c2)),
                        ));
                    }
                    _ => return Err(ChapFailure::Malformed),
                }
                self.state = State::Done;
                Ok(out)
            }
            State::Start | State::Done | State::Failed => Err(ChapFailure::OutOfOrder),
        }
    }
}

#[cfg(test)]
mod tests;
