//! SPC-4 persistent reservations (5.13, 6.15, 6.16): registrations keyed by I_T
//! nexus, the six reservation types, and the conflict rules every command passes
//! through. State is per logical unit and lives under the LU's state lock, so a
//! conflict check and the command it admits see the same reservation.
//!
//! Registrations outlive the session that made them (a nexus is identified by
//! initiator name, ISID and relative target port, not by session); with APTPL they
//! also outlive a restart, through the [`PrStore`] the daemon supplies.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::cdb::PrAccess;
use crate::params::PrOutParams;
use crate::sense::{Asc, Sense};

/// Reservation types (SPC-4 Table 172).
pub mod pr_type {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    pub const WRITE_EXCLUSIVE_RO: u8 = 5;
    pub const EXCLUSIVE_ACCESS_RO: u8 = 6;
    pub const WRITE_EXCLUSIVE_AR: u8 = 7;
    pub const EXCLUSIVE_ACCESS_AR: u8 = 8;
}
use pr_type::*;

const LU_SCOPE: u8 = 0;

/// Where APTPL state goes: the daemon writes it durably (write, fsync, rename).
pub trait PrStore: Send + Sync + std::fmt::Debug {
    fn save(&self, state: &str) -> std::io::Result<()>;
    fn load(&self) -> std::io::Result<Option<String>>;
}

/// An I_T nexus as reservations see it: the initiator port (name + ISID) and the
/// relative target port. Stable across reconnects, unlike a session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NexusKey {
    pub initiator: Arc<str>,
    pub isid: [u8; 6],
    pub relative_port: u16,
}

impl NexusKey {
    /// iSCSI initiator port TransportID, format 01b (SPC-4 7.6.4.6): name, ",i,0x",
    /// ISID in hex, NUL-terminated, padded to a multiple of 4 (at least 20 bytes).
    fn transport_id(&self) -> Vec<u8> {
        let mut name = format!("{},i,0x", self.initiator);
        for b in self.isid {
            let _ = write!(name, "{b:02x}");
        }
        let mut body = name.into_bytes();
        body.push(0);
        while body.len() < 16 || !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let mut v = vec![0x40 | 0x05, 0];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(&body);
        v
    }

    /// Parses an iSCSI TransportID with format 01b (initiator port). Returns the key
    /// (relative port supplied by the caller) and the TransportID's length.
    fn from_transport_id(b: &[u8], relative_port: u16) -> Option<(Self, usize)> {
        if b.len() < 4 || b[0] & 0x0f != 0x05 || b[0] >> 6 != 1 {
            return None;
        }
        let len = 4 + usize::from(u16::from_be_bytes([b[2], b[3]]));
        let body = b.get(4..len)?;
        let text = body.split(|&c| c == 0).next()?;
        let text = std::str::from_utf8(text).ok()?;
        let (name, isid) = text.split_once(",i,0x")?;
        if isid.len() != 12 || name.is_empty() {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(isid.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some((
            Self {
                initiator: name.into(),
                isid: out,
                relative_port,
            },
            len,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Registration {
    nexus: NexusKey,
    key: u64,
    all_tg_pt: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reservation {
    /// The holder; for all-registrants types every registrant holds it.
    holder: NexusKey,
    kind: u8,
}

/// What a PERSISTENT RESERVE OUT did that the LU must act on beyond the state change.
#[derive(Debug, Default)]
pub struct Effects {
    /// Nexuses to notify, with the unit attention each gets.
    pub unit_attentions: Vec<(NexusKey, Asc)>,
    /// The APTPL state to persist, when it changed and persistence is on.
    pub persist: Option<String>,
}

/// Persistent reservation state of one LU.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reservations {
    generation: u32,
    regs: Vec<Registration>,
    reservation: Option<Reservation>,
    aptpl: bool,
}

fn all_registrants(kind: u8) -> bool {
    matches!(kind, WRITE_EXCLUSIVE_AR | EXCLUSIVE_ACCESS_AR)
}

fn registrants_only(kind: u8) -> bool {
    matches!(kind, WRITE_EXCLUSIVE_RO | EXCLUSIVE_ACCESS_RO)
}

fn valid_type(kind: u8) -> bool {
    matches!(
        kind,
        WRITE_EXCLUSIVE
            | EXCLUSIVE_ACCESS
            | WRITE_EXCLUSIVE_RO
            | EXCLUSIVE_ACCESS_RO
            | WRITE_EXCLUSIVE_AR
            | EXCLUSIVE_ACCESS_AR
    )
}

impl Reservations {
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty() && self.reservation.is_none()
    }

    pub fn aptpl(&self) -> bool {
        self.aptpl
    }

    fn reg(&self, n: &NexusKey) -> Option<&Registration> {
        self.regs.iter().find(|r| &r.nexus == n)
    }

    fn holds(&self, n: &NexusKey) -> bool {
        match &self.reservation {
            None => false,
            Some(r) if all_registrants(r.kind) => self.reg(n).is_some(),
            Some(r) => &r.holder == n,
        }
    }

    /// Whether a command of access class `acc` from `n` conflicts with the persistent
    /// reservation.
    pub fn conflicts(&self, n: &NexusKey, acc: PrAccess) -> bool {
        let Some(res) = &self.reservation else {
            return false;
        };
        if acc == PrAccess::Any || self.holds(n) {
            return false;
        }
        let registered = self.reg(n).is_some();
        let exclusive_access = matches!(
            res.kind,
            EXCLUSIVE_ACCESS | EXCLUSIVE_ACCESS_RO | EXCLUSIVE_ACCESS_AR
        );
        let registrants_have_access = registrants_only(res.kind) || all_registrants(res.kind);
        if registrants_have_access && registered {
            return false;
        }
        acc == PrAccess::Write || exclusive_access
    }

    /// RESERVE(6)/RELEASE(6) against PR (SPC-4 5.13.3): while any registration
    /// exists they conflict.
    pub fn blocks_spc2(&self) -> bool {
        !self.is_empty()
    }

    /// PERSISTENT RESERVE IN (SPC-4 6.15).
    pub fn read(&self, sa: u8, persist_capable: bool) -> Result<Vec<u8>, Sense> {
        let mut v = Vec::new();
        match sa {
            0 => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                v.extend_from_slice(&((self.regs.len() * 8) as u32).to_be_bytes());
                for r in &self.regs {
                    v.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            1 => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                match &self.reservation {
                    None => v.extend_from_slice(&0u32.to_be_bytes()),
                    Some(r) => {
                        v.extend_from_slice(&16u32.to_be_bytes());
                        let key = if all_registrants(r.kind) {
                            0
                        } else {
                            self.reg(&r.holder).map_or(0, |g| g.key)
                        };
                        v.extend_from_slice(&key.to_be_bytes());
                        v.extend_from_slice(&[0; 5]);
                        v.push((LU_SCOPE << 4) | r.kind);
                        v.extend_from_slice(&[0; 2]);
                    }
                }
            }
            2 => {
                v.extend_from_slice(&8u16.to_be_bytes());
                // CRH (RESERVE/RELEASE(6) conflict while registrations exist),
                // ATP_C; PTPL_C when the daemon can persist. SIP_C is 0.
                v.push(0x10 | 0x04 | u8::from(persist_capable));
                // TMV; ALLOW COMMANDS 000b (no claim beyond the tables); PTPL_A.
                v.push(0x80 | u8::from(self.aptpl));
                // Type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR.
                v.extend_from_slice(&[0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01]);
                v.extend_from_slice(&[0, 0]);
            }
            3 => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                v.extend_from_slice(&[0; 4]);
                for r in &self.regs {
                    let tid = r.nexus.transport_id();
                    v.extend_from_slice(&r.key.to_be_bytes());
                    v.extend_from_slice(&[0; 4]);
                    let holder = self.holds(&r.nexus) && self.reservation.is_some();
                    v.push((u8::from(r.all_tg_pt) << 1) | u8::from(holder));
                    v.push(
                        self.reservation
                            .as_ref()
                            .filter(|_| holder)
                            .map_or(0, |res| (LU_SCOPE << 4) | res.kind),
                    );
                    v.extend_from_slice(&[0; 4]);
                    v.extend_from_slice(&r.nexus.relative_port.to_be_bytes());
                    v.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    v.extend_from_slice(&tid);
                }
                let add = (v.len() - 8) as u32;
                v[4..8].copy_from_slice(&add.to_be_bytes());
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
        }
        Ok(v)
    }

    /// PERSISTENT RESERVE OUT (SPC-4 6.16). `Err(None)` is RESERVATION CONFLICT.
    pub fn out(
        &mut self,
        n: &NexusKey,
        sa: u8,
        scope: u8,
        kind: u8,
        params: &PrOutParams,
        persist_capable: bool,
    ) -> Result<Effects, Option<Sense>> {
        let before = self.clone();
        let mut fx = Effects::default();
        if sa > 7 {
            return Err(Some(Sense::invalid_cdb_field(1, Some(4))));
        }
        let (key, sark, aptpl) = (params.key(), params.sark(), params.aptpl());
        let spec_i_pt = matches!(
            params,
            PrOutParams::Basic {
                spec_i_pt: true,
                ..
            }
        );
        let all_tg_pt = matches!(
            params,
            PrOutParams::Basic {
                all_tg_pt: true,
                ..
            }
        );
        if spec_i_pt {
            // SIP_C is 0: registering other initiator ports is not offered.
            return Err(Some(Sense::invalid_param_field(20, Some(3))));
        }
        if aptpl && !persist_capable {
            let (byte, bit) = params.aptpl_field();
            return Err(Some(Sense::invalid_param_field(byte, Some(bit))));
        }
        let mine = self.reg(n).map(|r| r.key);
        // Every service action but the two REGISTERs needs a matching registration.
        if !matches!(sa, 0 | 6) && mine != Some(key) {
            return Err(None);
        }
        if matches!(sa, 1 | 2 | 4 | 5 | 7) {
            if scope != LU_SCOPE {
                return Err(Some(Sense::invalid_cdb_field(2, Some(7))));
            }
            // RELEASE of another type is checked against the reservation below.
            if !valid_type(kind) && sa != 2 {
                return Err(Some(Sense::invalid_cdb_field(2, Some(3))));
            }
        }
        match sa {
            // REGISTER / REGISTER AND IGNORE EXISTING KEY.
            0 | 6 => {
                match mine {
                    None => {
                        if sa == 0 && key != 0 {
                            return Err(None);
                        }
                        if sark != 0 {
                            self.regs.push(Registration {
                                nexus: n.clone(),
                                key: sark,
                                all_tg_pt,
                            });
                            self.generation = self.generation.wrapping_add(1);
                        }
                    }
                    Some(k) => {
                        if sa == 0 && key != k {
                            return Err(None);
                        }
                        if sark == 0 {
                            self.unregister(n, &mut fx);
                        } else if let Some(r) = self.regs.iter_mut().find(|r| &r.nexus == n) {
                            r.key = sark;
                        }
                        self.generation = self.generation.wrapping_add(1);
                    }
                }
                self.aptpl = aptpl;
            }
            // RESERVE.
            1 => match &self.reservation {
                None => {
                    self.reservation = Some(Reservation {
                        holder: n.clone(),
                        kind,
                    })
                }
                Some(r) if self.holds(n) && r.kind == kind => {}
                Some(_) => return Err(None),
            },
            // RELEASE.
            2 => {
                if let Some(r) = self.reservation.clone() {
                    if self.holds(n) {
                        if r.kind != kind || scope != LU_SCOPE {
                            return Err(Some(Sense::illegal(Asc(0x2604))));
                        }
                        self.reservation = None;
                        if registrants_only(r.kind) || all_registrants(r.kind) {
                            self.notify_others(n, Asc::RESERVATIONS_RELEASED, &mut fx);
                        }
                    }
                }
            }
            // CLEAR.
            3 => {
                self.notify_others(n, Asc::RESERVATIONS_PREEMPTED, &mut fx);
                self.regs.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
            }
            // PREEMPT / PREEMPT AND ABORT.
            4 | 5 => self.preempt(n, sark, kind, &mut fx)?,
            // REGISTER AND MOVE.
            _ => self.register_and_move(n, sark, params, &mut fx)?,
        }
        if self.aptpl && persist_capable && *self != before {
            fx.persist = Some(self.to_text());
        } else if before.aptpl && !self.aptpl && persist_capable {
            fx.persist = Some(String::new());
        }
        Ok(fx)
    }

    fn notify_others(&self, n: &NexusKey, asc: Asc, fx: &mut Effects) {
        for r in self.regs.iter().filter(|r| &r.nexus != n) {
            fx.unit_attentions.push((r.nexus.clone(), asc));
        }
    }

    fn unregister(&mut self, n: &NexusKey, fx: &mut Effects) {
        let held = self.holds(n);
        self.regs.retain(|r| &r.nexus != n);
        if let Some(res) = self.reservation.clone() {
            let released = if all_registrants(res.kind) {
                self.regs.is_empty()
            } else {
                held
            };
            if released {
                self.reservation = None;
                if registrants_only(res.kind) {
                    self.notify_others(n, Asc::RESERVATIONS_RELEASED, fx);
                }
            }
        }
    }

    fn preempt(
        &mut self,
        n: &NexusKey,
        sark: u64,
        kind: u8,
        fx: &mut Effects,
    ) -> Result<(), Option<Sense>> {
        let remove = |this: &mut Self, pred: &dyn Fn(&Registration) -> bool, fx: &mut Effects| {
            let gone: Vec<NexusKey> = this
                .regs
                .iter()
                .filter(|r| pred(r))
                .map(|r| r.nexus.clone())
                .collect();
            this.regs.retain(|r| !pred(r));
            for g in &gone {
                if g != n {
                    fx.unit_attentions
                        .push((g.clone(), Asc::REGISTRATIONS_PREEMPTED));
                }
            }
            gone.len()
        };
        match self.reservation.clone() {
            Some(res) if all_registrants(res.kind) && sark == 0 => {
                remove(self, &|r| &r.nexus != n, fx);
                self.reservation = Some(Reservation {
                    holder: n.clone(),
                    kind,
                });
            }
            Some(res)
                if !all_registrants(res.kind)
                    && self.reg(&res.holder).map(|r| r.key) == Some(sark) =>
            {
                remove(self, &|r| r.key == sark && &r.nexus != n, fx);
                self.reservation = Some(Reservation {
                    holder: n.clone(),
                    kind,
                });
            }
            _ => {
                if sark == 0 {
                    return Err(Some(Sense::invalid_param_field(8, None)));
                }
                if remove(self, &|r| r.key == sark, fx) == 0 {
                    return Err(None);
                }
                if let Some(res) = &self.reservation {
                    if all_registrants(res.kind) && self.regs.is_empty() {
                        self.reservation = None;
                    }
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    fn register_and_move(
        &mut self,
        n: &NexusKey,
        sark: u64,
        params: &PrOutParams,
        fx: &mut Effects,
    ) -> Result<(), Option<Sense>> {
        let Some(res) = self.reservation.clone() else {
            return Err(None);
        };
        if all_registrants(res.kind) || !self.holds(n) {
            return Err(None);
        }
        if sark == 0 {
            return Err(Some(Sense::invalid_param_field(8, None)));
        }
        let PrOutParams::RegisterAndMove {
            unreg,
            relative_port: rel,
            transport_id,
            ..
        } = params
        else {
            return Err(Some(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)));
        };
        let (unreg, rel) = (*unreg, *rel);
        let Some(tid) = transport_id.as_deref() else {
            return Err(Some(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)));
        };
        let Some((dest, _)) = NexusKey::from_transport_id(tid, rel) else {
            return Err(Some(Sense::invalid_param_field(24, None)));
        };
        if &dest == n {
            return Err(Some(Sense::invalid_param_field(24, None)));
        }
        match self.regs.iter_mut().find(|r| r.nexus == dest) {
            Some(r) => r.key = sark,
            None => self.regs.push(Registration {
                nexus: dest.clone(),
                key: sark,
                all_tg_pt: false,
            }),
        }
        self.reservation = Some(Reservation {
            holder: dest,
            kind: res.kind,
        });
        if unreg {
            self.regs.retain(|r| &r.nexus != n);
        }
        let _ = fx;
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Line-oriented text for APTPL persistence: `generation N`, then one `reg` line
    /// per registration and at most one `res` line.
    pub fn to_text(&self) -> String {
        let mut s = format!("oxtgt-pr 1\ngeneration {}\n", self.generation);
        let hex = |n: &NexusKey| {
            n.isid.iter().fold(String::new(), |mut a, b| {
                let _ = write!(a, "{b:02x}");
                a
            })
        };
        for r in &self.regs {
            let _ = writeln!(
                s,
                "reg {:016x} {} {} {} {}",
                r.key,
                u8::from(r.all_tg_pt),
                r.nexus.relative_port,
                hex(&r.nexus),
                r.nexus.initiator
            );
        }
        if let Some(res) = &self.reservation {
            let _ = writeln!(
                s,
                "res {} {} {} {}",
                res.kind,
                res.holder.relative_port,
                hex(&res.holder),
                res.holder.initiator
            );
        }
        s
    }

    /// Parses [`Reservations::to_text`]; the state comes back with APTPL set.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some("oxtgt-pr 1") {
            return Err("not an oxtgt reservation file (version line)".into());
        }
        let mut st = Self {
            aptpl: true,
            ..Self::default()
        };
        let nexus = |rel: &str, isid: &str, name: &str| -> Result<NexusKey, String> {
            let mut id = [0u8; 6];
            if isid.len() != 12 {
                return Err(format!("bad ISID {isid}"));
            }
            for (i, o) in id.iter_mut().enumerate() {
                *o = u8::from_str_radix(&isid[2 * i..2 * i + 2], 16)
                    .map_err(|_| format!("bad ISID {isid}"))?;
            }
            Ok(NexusKey {
                initiator: name.into(),
                isid: id,
                relative_port: rel.parse().map_err(|_| format!("bad port {rel}"))?,
            })
        };
        for (no, line) in lines.enumerate() {
            // The initiator name is the last field and taken whole.
            let n = if line.starts_with("res ") { 5 } else { 6 };
            let f: Vec<&str> = line.splitn(n, ' ').collect();
            let bad = || format!("line {}: {line:?}", no + 2);
            match f.as_slice() {
                ["generation", g] => st.generation = g.parse().map_err(|_| bad())?,
                ["reg", key, atp, rel, isid, name] => st.regs.push(Registration {
                    key: u64::from_str_radix(key, 16).map_err(|_| bad())?,
                    all_tg_pt: *atp == "1",
                    nexus: nexus(rel, isid, name)?,
                }),
                ["res", kind, rel, isid, name] => {
                    let kind: u8 = kind.parse().map_err(|_| bad())?;
                    if !valid_type(kind) {
                        return Err(bad());
                    }
                    st.reservation = Some(Reservation {
                        kind,
                        holder: nexus(rel, isid, name)?,
                    });
                }
                [""] => {}
                _ => return Err(bad()),
            }
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests;
