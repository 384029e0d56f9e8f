"""A Fairtrail receipt verifier written from SPEC.md alone (hashlib + pure-Python Ed25519 and BLAKE3)."""
import base64, hashlib, json, sys
from blake3py import blake3

class Reject(Exception): pass

# ---- 1.2 encodings
def b64(s):
    if not isinstance(s, str): raise Reject('b64 type')
    try:
        raw = base64.b64decode(s.encode('ascii'), validate=True)
    except Exception:
        raise Reject('base64')
    if base64.b64encode(raw).decode('ascii') != s: raise Reject('base64 not canonical')
    return raw
HEXCH = set('0123456789abcdefABCDEF')
def hexdec(s, n=None):
    if not isinstance(s, str) or len(s) % 2 or any(c not in HEXCH for c in s): raise Reject('hex')
    b = bytes.fromhex(s)
    if n is not None and len(b) != n: raise Reject('hex length')
    return b

# ---- 2. Ed25519
p = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
d = (-121665 * pow(121666, p - 2, p)) % p
I = pow(2, (p - 1) // 4, p)
SMALL = {int.from_bytes(bytes.fromhex(h), 'little') for h in [
    '00'*32, '01' + '00'*31, 'ec' + 'ff'*30 + '7f',
    'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
    '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05']}
def decode_point(b):
    if len(b) != 32: raise Reject('point length')
    n = int.from_bytes(b, 'little')
    y = (n & (2**255 - 1)) % p
    sign = n >> 255
    u = (y * y - 1) % p; v = (d * y * y + 1) % p
    x = (u * pow(v, 3, p) * pow(u * pow(v, 7, p), (p - 5) // 8, p)) % p
    if (v * x * x - u) % p == 0: pass
    elif (v * x * x + u) % p == 0: x = x * I % p
    else: raise Reject('not a point')
    if x & 1: x = p - x
    if sign: x = (p - x) % p
    return (x, y)
def small_order(P): return P[1] in SMALL
def accepted_key(b):
    P = decode_point(b)
    if small_order(P): raise Reject('small order key')
    return P
def padd(P, Q):
    x1, y1 = P; x2, y2 = Q
    t = d * x1 * x2 * y1 * y2 % p
    return ((x1 * y2 + x2 * y1) * pow(1 + t, p - 2, p) % p, (y1 * y2 + x1 * x2) * pow(1 - t, p - 2, p) % p)
def pmul(k, P):
    R = (0, 1)
    while k:
        if k & 1: R = padd(R, P)
        P = padd(P, P); k >>= 1
    return R
def encode(P):
    x, y = P
    return (y | ((x & 1) << 255)).to_bytes(32, 'little')
By = 4 * pow(5, p - 2, p) % p
Bx = decode_point(encode((0, By)))[0]  # even root
B = decode_point(By.to_bytes(32, 'little'))
def verify_sig(A_bytes, A, M, sig):
    # SPEC 2.4: R canonical and not of small order, S < L, then the cofactored equation
    # [8](S*B - k*A - R) = identity (ZIP 215), which batch verification agrees with.
    if len(sig) != 64: return False
    S = int.from_bytes(sig[32:], 'little')
    if S >= L: return False
    try: R = decode_point(sig[:32])
    except Reject: return False
    if encode(R) != sig[:32]: return False
    if small_order(R): return False
    k = int.from_bytes(hashlib.sha512(sig[:32] + A_bytes + M).digest(), 'little') % L
    negA = ((p - A[0]) % p, A[1])
    negR = ((p - R[0]) % p, R[1])
    D = padd(padd(pmul(S, B), pmul(k, negA)), negR)
    return pmul(8, D) == (0, 1)

# ---- 1.4 protobuf
def varint(buf, i, end):
    v = 0
    for n in range(10):
        if i >= end: raise Reject('truncated varint')
        b = buf[i]; i += 1
        v |= (b & 0x7f) << (7 * n)
        if b < 0x80:
            if n == 9 and b >= 2: raise Reject('varint overflow')
            return v, i
    raise Reject('varint too long')
# schema: field -> (kind, repeated, submsg-schema or None); kinds: u64,u32,bool,enum,bytes,string,msg
S_QTY = {1: ('u64', 0, None), 2: ('enum', 0, None)}
S_PRICE = {1: ('string', 0, None), 2: ('u64', 0, None), 3: ('msg', 0, S_QTY)}
S_LOTREF = {1: ('bytes', 0, None), 2: ('u32', 0, None)}
S_LOTIN = {1: ('msg', 0, S_LOTREF), 2: ('u64', 0, None)}
S_LOTOUT = {1: ('string', 0, None), 2: ('msg', 0, S_QTY), 3: ('string', 0, None)}
BODIES = {
 10: {1: ('string',0,None), 2: ('enum',1,None), 3: ('enum',0,None), 4: ('string',0,None), 5: ('string',0,None), 6: ('bytes',1,None), 7: ('u32',0,None)},
 11: {1: ('bytes',0,None), 2: ('bool',0,None)},
 12: {1: ('bytes',0,None), 2: ('string',0,None), 3: ('string',0,None), 4: ('string',1,None), 5: ('enum',1,None), 6: ('u64',0,None), 7: ('u64',0,None), 8: ('enum',0,None), 9: ('bytes',0,None)},
 13: {1: ('bytes',0,None), 2: ('enum',0,None), 3: ('u64',0,None), 4: ('string',0,None)},
 14: {1: ('string',0,None), 2: ('msg',0,S_QTY), 3: ('u64',0,None), 4: ('u64',0,None), 5: ('string',0,None), 6: ('string',0,None), 7: ('msg',0,S_PRICE), 8: ('msg',0,S_PRICE), 9: ('u32',0,None), 10: ('string',0,None)},
 15: {1: ('msg',1,S_LOTIN), 2: ('bytes',0,None), 3: ('msg',0,S_PRICE), 4: ('string',0,None)},
 16: {1: ('bytes',0,None), 2: ('enum',0,None), 3: ('u64',0,None)},
 17: {1: ('msg',1,S_LOTIN), 2: ('msg',1,S_LOTOUT), 3: ('string',0,None)},
 18: {1: ('string',0,None), 2: ('string',0,None), 3: ('string',0,None), 4: ('msg',1,S_LOTIN), 5: ('string',0,None)},
 19: {1: ('bytes',0,None), 2: ('string',0,None)},
}
S_STATEMENT = {1: ('bytes',0,None), 2: ('u64',0,None), 3: ('bytes',1,None), 4: ('string',0,None)}
for f, sch in BODIES.items(): S_STATEMENT[f] = ('msg', 0, sch, 'body')
S_SIG = {1: ('bytes',0,None), 2: ('bytes',0,None)}
S_ENV = {1: ('bytes',0,None), 2: ('string',0,None), 3: ('msg',1,S_SIG)}
S_LOG = {1: ('msg',0,S_ENV), 2: ('u64',0,None)}
WT = {'u64':0,'u32':0,'bool':0,'enum':0,'bytes':2,'string':2,'msg':2}
def skip(buf, i, end, wt, field, depth):
    if depth > 100: raise Reject('depth')
    if wt == 0: _, i = varint(buf, i, end); return i
    if wt == 1: n = 8
    elif wt == 5: n = 4
    elif wt == 2: n, i = varint(buf, i, end)
    elif wt == 3:
        while True:
            key, i = varint(buf, i, end)
            if key > 0xffffffff: raise Reject('key')
            f, w = key >> 3, key & 7
            if f < 1 or w in (6, 7): raise Reject('key')
            if w == 4:
                if f != field: raise Reject('end group mismatch')
                return i
            i = skip(buf, i, end, w, f, depth + 1)
    else: raise Reject('end group')
    if n > end - i: raise Reject('underflow')
    return i + n
def decode(buf, schema, i=0, end=None, out=None, depth=0):
    if end is None: end = len(buf)
    if depth > 100: raise Reject('depth')
    out = {} if out is None else out
    while i < end:
        key, i = varint(buf, i, end)
        if key > 0xffffffff: raise Reject('key too large')
        f, wt = key >> 3, key & 7
        if f < 1: raise Reject('field 0')
        if wt in (6, 7): raise Reject('wire type')
        if f not in schema:
            if wt == 4: raise Reject('stray end group')
            i = skip(buf, i, end, wt, f, depth + 1); continue
        spec = schema[f]; kind, rep, sub = spec[0], spec[1], spec[2]
        oneof = len(spec) > 3
        if kind == 'enum' and rep and wt == 2:
            n, i = varint(buf, i, end)
            if n > end - i: raise Reject('underflow')
            j, stop = i, i + n
            while j < stop:
                v, j = varint(buf, j, stop)
                out.setdefault(f, []).append(v & 0xffffffff)
            i = stop; continue
        if wt != WT[kind]: raise Reject('wrong wire type for field %d' % f)
        if wt == 0:
            v, i = varint(buf, i, end)
            if kind in ('u32', 'enum'): v &= 0xffffffff
            if kind == 'bool': v = v != 0
        else:
            n, i = varint(buf, i, end)
            if n > end - i: raise Reject('underflow')
            raw = buf[i:i+n]
            if kind == 'string':
                try: raw.decode('utf-8')
                except UnicodeDecodeError: raise Reject('utf-8')
                v = raw
            elif kind == 'bytes': v = bytes(raw)
            else:
                if rep: v = decode(buf, sub, i, i + n, None, depth + 1)
                else:
                    if oneof:
                        prev = out.get('body')
                        base = out[f] if (prev == f and f in out) else {}
                        if prev != f:
                            for g_ in list(out.keys()):
                                if g_ in BODIES: del out[g_]
                        out['body'] = f
                        v = decode(buf, sub, i, i + n, base, depth + 1)
                    else:
                        v = decode(buf, sub, i, i + n, out.get(f, {}), depth + 1)
            i += n
        if rep: out.setdefault(f, []).append(v)
        else: out[f] = v
    return out

# ---- 7. notes and checkpoints
def name_ok(name):
    return name != '' and '+' not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)
def parse_verifier_key(text):
    text = text.strip()
    parts = text.split('+', 2)
    if len(parts) != 3: raise Reject('vkey')
    name, hid, b = parts
    if not name_ok(name): raise Reject('vkey name')
    if len(hid) != 8: raise Reject('vkey id')
    kid = hexdec(hid, 4)
    raw = b64(b)
    if len(raw) < 1 or raw[0] != 1: raise Reject('vkey type')
    pk = raw[1:]
    if len(pk) != 32: raise Reject('vkey len')
    P = accepted_key(pk)
    if hashlib.sha256(name.encode() + b'\n\x01' + pk).digest()[:4] != kid: raise Reject('vkey id mismatch')
    return name, kid, pk, P
def open_note(msg, vkey):
    name, kid, pk, P = vkey
    if any(ord(c) < 0x20 and c != '\n' for c in msg): raise Reject('control char')
    k = msg.rfind('\n\n')
    if k < 0: raise Reject('no blank line')
    text = msg[:k+1]; block = msg[k+2:]
    if block == '': raise Reject('no signatures')
    if not block.endswith('\n'): raise Reject('no final newline')
    lines = block[:-1].split('\n')
    if len(lines) > 100: raise Reject('too many sigs')
    sigs = []
    for line in lines:
        if not line.startswith('\u2014 '): raise Reject('sig prefix')
        rest = line[2:]
        if ' ' not in rest: raise Reject('sig space')
        n, b = rest.split(' ', 1)
        if not name_ok(n): raise Reject('sig name')
        raw = b64(b)
        if len(raw) < 5: raise Reject('sig short')
        sigs.append((n, raw[:4], raw[4:]))
    seen = False
    for n, i_, s in sigs:
        if n == name and i_ == kid:
            if not verify_sig(pk, P, text.encode('utf-8'), s): raise Reject('bad note signature')
            seen = True
    if not seen: raise Reject('no signature by key')
    return text
def parse_checkpoint(text, origin_expected):
    if not text.endswith('\n'): raise Reject('cp newline')
    lines = text[:-1].split('\n')
    if lines[0] == '': raise Reject('empty origin')
    if len(lines) < 3: raise Reject('missing line')
    origin, size, root = lines[0], lines[1], lines[2]
    if any(ord(c) < 0x20 for c in origin): raise Reject('origin ctl')
    if size == '' or any(c not in '0123456789' for c in size) or (len(size) > 1 and size[0] == '0'): raise Reject('size')
    size = int(size)
    if size >= 2**64: raise Reject('size range')
    root = b64(root)
    if len(root) != 32: raise Reject('root len')
    for e in lines[3:]:
        if e == '' or any(ord(c) < 0x20 for c in e): raise Reject('ext')
    if origin != origin_expected: raise Reject('origin mismatch')
    return size, root

# ---- 6. Merkle
def nh(a, b): return hashlib.sha256(b'\x01' + a + b).digest()
def verify_inclusion(leaf_hash, index, size, proof, root):
    if index >= size: raise Reject('index out of range')
    last = size - 1
    inner = (index ^ last).bit_length()
    border = bin(index >> inner).count('1')
    if len(proof) != inner + border: raise Reject('wrong proof length')
    acc = leaf_hash
    for i in range(inner):
        acc = nh(acc, proof[i]) if (index >> i) & 1 == 0 else nh(proof[i], acc)
    for h in proof[inner:]: acc = nh(h, acc)
    if acc != root: raise Reject('root mismatch')

# ---- 8. receipt
PAYLOAD_TYPE = b'application/vnd.fairtrail.statement.v1+protobuf'
def no_dups(pairs):
    d_ = {}
    for k, v in pairs:
        if k in d_: raise Reject('duplicate member')
        d_[k] = v
    return d_
def verify_receipt(text, vkey_text):
    vkey = parse_verifier_key(vkey_text)
    try: r = json.loads(text, object_pairs_hook=no_dups, parse_float=lambda s: (_ for _ in ()).throw(Reject('float')))
    except Reject: raise
    except Exception as e: raise Reject('json: %s' % e)
    if not isinstance(r, dict): raise Reject('not object')
    for k, t in [('index', int), ('statement_id', str), ('leaf_hash', str), ('leaf', str), ('checkpoint', str), ('inclusion_proof', list)]:
        if k not in r or not isinstance(r[k], t) or isinstance(r[k], bool): raise Reject('member ' + k)
    if 'existing' in r and not isinstance(r['existing'], bool): raise Reject('existing type')
    if not (0 <= r['index'] < 2**64): raise Reject('index range')
    if not all(isinstance(x, str) for x in r['inclusion_proof']): raise Reject('proof type')
    # 1
    text_ = open_note(r['checkpoint'], vkey)
    size, root = parse_checkpoint(text_, vkey[0])
    # 2, 3
    leaf = b64(r['leaf'])
    if len(leaf) > 65535: raise Reject('leaf too large')
    entry = decode(leaf, S_LOG)
    if 1 not in entry: raise Reject('no envelope')
    env = entry[1]
    # 4
    lh = hashlib.sha256(b'\x00' + leaf).digest()
    if hexdec(r['leaf_hash'], 32) != lh: raise Reject('leaf hash mismatch')
    # 5
    sid = r['statement_id'].strip()
    if len(sid) != 64: raise Reject('statement id text')
    payload = env.get(1, b'')
    if hexdec(sid, 32) != blake3(payload): raise Reject('statement id mismatch')
    # 6
    if len(payload) == 0: raise Reject('empty payload')
    if len(payload) > 61440: raise Reject('payload too large')
    if bytes(env.get(2, b'')) != PAYLOAD_TYPE: raise Reject('payload type')
    sigs = env.get(3, [])
    if not 1 <= len(sigs) <= 32: raise Reject('signature count')
    keys = []
    for s in sigs:
        pk = s.get(1, b''); sg = s.get(2, b'')
        if len(pk) != 32: raise Reject('key length')
        if pk in [k for k, _ in keys]: raise Reject('duplicate signer')
        P = accepted_key(pk)
        if len(sg) != 64: raise Reject('sig length')
        keys.append((pk, P))
    # 7
    st = decode(payload, S_STATEMENT)
    issuer = st.get(1, b'')
    if len(issuer) != 32: raise Reject('issuer length')
    accepted_key(issuer)
    if 'body' not in st: raise Reject('no body')
    recovery = st['body'] == 11 and st[11].get(2, False)
    if not recovery and issuer not in [k for k, _ in keys]: raise Reject('issuer did not sign')
    # 8
    pae = b'DSSEv1 ' + str(len(PAYLOAD_TYPE)).encode() + b' ' + PAYLOAD_TYPE + b' ' + str(len(payload)).encode() + b' ' + payload
    for (pk, P), s in zip(keys, sigs):
        if not verify_sig(pk, P, pae, s[2]): raise Reject('bad envelope signature')
    # 9, 10
    proof = [hexdec(h, 32) for h in r['inclusion_proof']]
    verify_inclusion(lh, r['index'], size, proof, root)
    return True

if __name__ == '__main__':
    try:
        verify_receipt(open(sys.argv[1]).read(), sys.argv[2])
        print('VALID')
    except Reject as e:
        print('INVALID', e)
        sys.exit(1)
