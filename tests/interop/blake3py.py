# Minimal pure-Python BLAKE3 (hash mode, 32-byte output), written from the BLAKE3 paper.
IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
CHUNK_START, CHUNK_END, PARENT, ROOT = 1, 2, 4, 8
M32 = 0xffffffff
def rotr(x, n): return ((x >> n) | (x << (32 - n))) & M32
def g(s, a, b, c, d, x, y):
    s[a] = (s[a] + s[b] + x) & M32; s[d] = rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32; s[b] = rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & M32; s[d] = rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32; s[b] = rotr(s[b] ^ s[c], 7)
def compress(cv, block, counter, blen, flags):
    m = [int.from_bytes(block[4*i:4*i+4], 'little') for i in range(16)]
    s = list(cv) + IV[:4] + [counter & M32, (counter >> 32) & M32, blen, flags]
    for r in range(7):
        g(s,0,4,8,12,m[0],m[1]); g(s,1,5,9,13,m[2],m[3]); g(s,2,6,10,14,m[4],m[5]); g(s,3,7,11,15,m[6],m[7])
        g(s,0,5,10,15,m[8],m[9]); g(s,1,6,11,12,m[10],m[11]); g(s,2,7,8,13,m[12],m[13]); g(s,3,4,9,14,m[14],m[15])
        m = [m[PERM[i]] for i in range(16)]
    for i in range(8):
        s[i] ^= s[i+8]; s[i+8] ^= cv[i]
    return s
def words_to_bytes(w): return b''.join(x.to_bytes(4, 'little') for x in w)
def chunk_output(chunk, counter):
    # returns (cv_in, block, counter, blen, flags) of the last block, before ROOT decision
    cv = IV
    blocks = [chunk[i:i+64] for i in range(0, len(chunk), 64)] or [b'']
    for i, b in enumerate(blocks):
        flags = (CHUNK_START if i == 0 else 0) | (CHUNK_END if i == len(blocks) - 1 else 0)
        if i == len(blocks) - 1:
            return (cv, b.ljust(64, b'\0'), counter, len(b), flags)
        cv = compress(cv, b, counter, 64, flags)[:8]
def blake3(data):
    chunks = [data[i:i+1024] for i in range(0, len(data), 1024)] or [b'']
    if len(chunks) == 1:
        cv, b, c, bl, f = chunk_output(chunks[0], 0)
        return words_to_bytes(compress(cv, b, c, bl, f | ROOT)[:8])
    stack = []
    for idx, ch in enumerate(chunks):
        cv, b, c, bl, f = chunk_output(ch, idx)
        out = compress(cv, b, c, bl, f)[:8]
        if idx == len(chunks) - 1:
            # merge everything, last with ROOT
            while stack:
                left = stack.pop()
                block = words_to_bytes(left) + words_to_bytes(out)
                flags = PARENT | (ROOT if not stack else 0)
                out = compress(IV, block, 0, 64, flags)[:8]
            return words_to_bytes(out)
        total = idx + 1
        while total & 1 == 0:
            left = stack.pop()
            out = compress(IV, words_to_bytes(left) + words_to_bytes(out), 0, 64, PARENT)[:8]
            total >>= 1
        stack.append(out)
if __name__ == '__main__':
    # official test vector inputs: bytes i % 251
    def inp(n): return bytes(i % 251 for i in range(n))
    print(blake3(b'').hex())  # af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262
    print(blake3(inp(1)).hex()) # 2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213
    print(blake3(inp(1025)).hex()) # d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444
    print(blake3(inp(3073)).hex())
