#!/usr/bin/env python3
"""Fuzz seeds from a packet capture of real iSCSI sessions against oxtgt.

    tcpdump -i lo -s 0 -w cap.pcap "tcp port PORT"   # while libiscsi's tests run
    fuzz/seeds/from_pcap.py cap.pcap PORT fuzz/corpus

Reassembles each initiator-to-target TCP stream, splits it into PDUs (no digests:
the captured sessions negotiate none) and writes, per fuzz target, the inputs that
target takes: whole PDUs (pdu_framer, with the digest-selector byte 0), login and
text data (text_keys; login PDU sequences for login), CDBs (cdb), and the
parameter lists of EXTENDED COPY (xcopy_params), PERSISTENT RESERVE OUT, UNMAP and
MODE SELECT (scsi_params, with its selector byte), POPULATE TOKEN and WRITE USING
TOKEN (rod_params). Duplicates are written once; big data segments are skipped.
"""
import hashlib
import os
import struct
import sys
from collections import defaultdict

MAX_SEED = 16 * 1024


def packets(path, port):
    with open(path, "rb") as f:
        gh = f.read(24)
        magic = struct.unpack("<I", gh[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        linktype = struct.unpack(endian + "I", gh[20:24])[0]
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                return
            incl = struct.unpack(endian + "I", rh[8:12])[0]
            pkt = f.read(incl)
            off = 14 if linktype == 1 else 16 if linktype == 113 else 0
            ip = pkt[off:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            tcp = ip[ihl:total]
            sport, dport, seq = struct.unpack(">HHI", tcp[:8])
            doff = (tcp[12] >> 4) * 4
            payload = tcp[doff:]
            if dport == port and payload:
                yield sport, seq, payload


def streams(path, port):
    segs = defaultdict(dict)
    for sport, seq, payload in packets(path, port):
        segs[sport].setdefault(seq, payload)
    for sport, by_seq in segs.items():
        out = bytearray()
        nxt = None
        for seq in sorted(by_seq):
            p = by_seq[seq]
            if nxt is not None and seq < nxt:
                p = p[nxt - seq:]
            out += p
            nxt = seq + len(by_seq[seq]) if nxt is None or seq + len(by_seq[seq]) > nxt else nxt
        yield bytes(out)


def pdus(stream):
    at = 0
    while at + 48 <= len(stream):
        bhs = stream[at:at + 48]
        ahs = bhs[4] * 4
        dlen = int.from_bytes(bhs[5:8], "big")
        end = at + 48 + ahs + ((dlen + 3) & ~3)
        if end > len(stream):
            return
        yield bhs, stream[at + 48 + ahs:at + 48 + ahs + dlen], stream[at:end]
        at = end


def main():
    cap, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seeds = defaultdict(set)
    for s in streams(cap, port):
        login = bytearray()
        pending = {}  # ITT -> (opcode, service action, first parameter bytes)
        for bhs, data, whole in pdus(s):
            op = bhs[0] & 0x3F
            if len(whole) <= MAX_SEED:
                seeds["pdu_framer"].add(b"\0" + whole)
            if op in (0x03, 0x04) and data:
                seeds["text_keys"].add(bytes(data))
            if op == 0x03 and len(login) + len(whole) + 2 <= MAX_SEED:
                login += len(whole).to_bytes(2, "big") + whole
            if op == 0x01:
                cdb = bytes(bhs[32:48])
                seeds["cdb"].add(cdb)
                itt = bhs[16:20]
                pending[itt] = (cdb, bytearray(data))
            if op == 0x05:
                itt = bhs[16:20]
                if itt in pending and len(pending[itt][1]) < MAX_SEED:
                    pending[itt][1].extend(data[: MAX_SEED - len(pending[itt][1])])
        if login:
            seeds["login"].add(bytes(login))
        for cdb, params in pending.values():
            p = bytes(params)
            if not p:
                continue
            op, sa = cdb[0], cdb[1] & 0x1F
            if op == 0x83 and sa in (0x00, 0x01):
                seeds["xcopy_params"].add(p)
            elif op == 0x83 and sa in (0x10, 0x11):
                seeds["rod_params"].add(p)
            elif op == 0x5F:
                # scsi_params: selector % 3 == 0 picks PR OUT, selector >> 5 its SA.
                sel = next(sa << 5 | low for low in range(32) if (sa << 5 | low) % 3 == 0)
                seeds["scsi_params"].add(bytes([sel]) + p)
            elif op == 0x42:
                seeds["scsi_params"].add(bytes([1]) + p)  # % 3 == 1: UNMAP
            elif op in (0x15, 0x55):
                # % 3 == 2: MODE SELECT; bit 7 picks the 10-byte form.
                seeds["scsi_params"].add(bytes([0x80 if op == 0x55 else 2]) + p)
    for target, items in seeds.items():
        d = os.path.join(outdir, target)
        os.makedirs(d, exist_ok=True)
        for item in items:
            name = hashlib.sha1(item).hexdigest()
            with open(os.path.join(d, name), "wb") as f:
                f.write(item)
        print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    main()
