//! Text requests on a connection (RFC 7143 §11.10): SendTargets for discovery,
//! answered from the targets the initiator may see.

use super::*;

impl Conn {
    pub(super) fn on_text(&mut self, t: pdu::TextReq, data: &[u8], counted: bool) {
        let mut out = TextPairs::default();
        match TextPairs::parse(data) {
            Ok(pairs) => {
                for (k, v) in &pairs.0 {
                    if k == "SendTargets" {
                        self.send_targets(v, &mut out);
                    } else {
                        out.push(k, "NotUnderstood");
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "malformed text request");
                out.push("X-oxtgt-Error", "malformed text");
            }
        }
        let mut body = out.encode();
        body.truncate(self.params.max_send_data_segment_length as usize);
        let resp = TextResp {
            final_: true,
            cont: false,
            lun: t.lun,
            itt: t.itt,
            ttt: NO_TAG,
            data_len: body.len(),
        };
        let mut o = Outgoing::one(PduOut::with_data(resp.encode(), SnMode::Advance, body));
        o.completes_command = counted;
        self.send(o);
    }

    /// SendTargets (RFC 7143 §13.3, Appendix C): targets this initiator may see, with
    /// the portal this connection arrived on.
    pub(super) fn send_targets(&self, what: &str, out: &mut TextPairs) {
        let initiator = &self.params.initiator_name;
        let portal = self.local.map(|a| match a {
            SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        });
        for t in self.reg.visible_targets(initiator) {
            let wanted = match what {
                "All" => self.discovery(),
                "" => self.target.as_ref().is_some_and(|s| s.name == t.name),
                name => name == t.name,
            };
            if !wanted {
                continue;
            }
            out.push("TargetName", t.name.clone());
            if let Some(p) = &portal {
                out.push("TargetAddress", format!("{p},{}", t.tpgt));
            }
        }
    }
}
