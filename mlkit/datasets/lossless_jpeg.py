"""JPEG sin pérdida (ITU T.81, proceso 14, SOF3) / lossless JPEG codec in numpy.

DDSM stores its mammograms in this format (written by the Stanford PVRG codec), and no library
in the project's dependencies decodes it, so the project carries its own codec:

* :func:`decode_lossless_jpeg` reads one grey-level (single component) SOF3 image with Huffman
  coding, predictors 1-7, point transform, restart intervals and DNL. Differences are added
  modulo 2**16 as T.81 H.2.1 requires (never clamped).
* :func:`encode_lossless_jpeg` writes the same format with a Huffman table optimised for the image
  (T.81 Annex K.2); it exists to make test data and small fixtures, since DDSM itself is not
  reachable from here.

Speed: the Huffman stream is decoded with lookup tables computed for every bit position in
numpy; only the hop from one code to the next runs in Python (one list lookup per pixel), and the
predictors are undone with cumulative sums. A 3000 x 5000 DDSM film takes seconds, not minutes.
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field
from typing import Final

import numpy as np

SOI: Final[int] = 0xD8
EOI: Final[int] = 0xD9
SOF3: Final[int] = 0xC3
DHT: Final[int] = 0xC4
SOS: Final[int] = 0xDA
DRI: Final[int] = 0xDD
DNL: Final[int] = 0xDC
RST0: Final[int] = 0xD0
_OTHER_SOF: Final[frozenset[int]] = frozenset({0xC0, 0xC1, 0xC2, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_CHUNK_BYTES: Final[int] = 1 << 18
_INVALID_HOP: Final[int] = 1 << 30
_MASK16: Final[int] = 0xFFFF


class LosslessJpegError(ValueError):
    """The data are not a lossless JPEG this codec can read; message in Spanish / English."""


@dataclass
class HuffmanTable:
    """A DHT table: ``bits[i]`` codes of length ``i + 1`` and their symbols, in order."""

    bits: list[int]
    values: list[int]

    def code_lengths(self) -> dict[int, tuple[int, int]]:
        """``symbol -> (code, length)`` from the canonical assignment of T.81 Annex C."""
        codes: dict[int, tuple[int, int]] = {}
        code = 0
        k = 0
        for length in range(1, 17):
            for _ in range(self.bits[length - 1]):
                codes[self.values[k]] = (code, length)
                code += 1
                k += 1
            code <<= 1
        return codes


@dataclass
class FrameHeader:
    """What the markers of a lossless JPEG say."""

    precision: int
    rows: int
    cols: int
    components: int
    predictor: int = 1
    point_transform: int = 0
    restart_interval: int = 0
    tables: dict[int, HuffmanTable] = field(default_factory=dict)
    table_id: int = 0


# --- decoding -----------------------------------------------------------------------------


def _u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise LosslessJpegError("archivo truncado / truncated file")
    return (data[pos] << 8) | data[pos + 1]


def _segment(data: bytes, pos: int) -> bytes:
    length = _u16(data, pos)
    if length < 2 or pos + length > len(data):
        raise LosslessJpegError(f"segmento de longitud inválida en {pos} / bad segment length at {pos}")
    return data[pos + 2 : pos + length]


def _parse_dht(payload: bytes, tables: dict[int, HuffmanTable]) -> None:
    pos = 0
    while pos < len(payload):
        if pos + 17 > len(payload):
            raise LosslessJpegError("tabla Huffman truncada / truncated Huffman table")
        table_class, table_id = payload[pos] >> 4, payload[pos] & 0x0F
        bits = list(payload[pos + 1 : pos + 17])
        total = sum(bits)
        values = list(payload[pos + 17 : pos + 17 + total])
        if len(values) != total:
            raise LosslessJpegError("tabla Huffman truncada / truncated Huffman table")
        if table_class == 0:  # lossless scans use the DC tables
            if any(v > 16 for v in values):
                raise LosslessJpegError("categoría Huffman > 16 / Huffman category above 16")
            tables[table_id] = HuffmanTable(bits, values)
        pos += 17 + total


def read_header(data: bytes) -> tuple[FrameHeader, int]:
    """Parse the markers up to the first scan; return the header and where entropy data start."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        raise LosslessJpegError("no es un archivo JPEG (falta SOI) / not a JPEG file (no SOI)")
    header: FrameHeader | None = None
    tables: dict[int, HuffmanTable] = {}
    restart = 0
    pos = 2
    while True:
        while pos < len(data) and data[pos] != 0xFF:
            pos += 1  # tolerate junk between segments, as old decoders do
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            raise LosslessJpegError("no se encontró el escaneo (SOS) / no scan (SOS) found")
        marker = data[pos]
        pos += 1
        if marker in _OTHER_SOF:
            raise LosslessJpegError(
                f"JPEG con pérdida o no soportado (SOF{marker - 0xC0}); se esperaba SOF3 / "
                f"lossy or unsupported JPEG (SOF{marker - 0xC0}); expected SOF3 (lossless)"
            )
        if marker == EOI:
            raise LosslessJpegError("EOI antes del escaneo / EOI before any scan")
        payload = _segment(data, pos)
        if marker == SOF3:
            if len(payload) < 6:
                raise LosslessJpegError("SOF3 truncado / truncated SOF3")
            precision, rows, cols, comps = payload[0], _u16(payload, 1), _u16(payload, 3), payload[5]
            if not 2 <= precision <= 16:
                raise LosslessJpegError(f"precisión inválida / invalid precision: {precision}")
            header = FrameHeader(precision=precision, rows=rows, cols=cols, components=comps)
        elif marker == DHT:
            _parse_dht(payload, tables)
        elif marker == DRI:
            restart = _u16(payload, 0)
        elif marker == SOS:
            if header is None:
                raise LosslessJpegError("SOS antes de SOF3 / SOS before SOF3")
            count = payload[0]
            if count != 1 or header.components != 1:
                raise LosslessJpegError(
                    "solo se leen imágenes de un componente (escala de grises) / "
                    "only single-component (grey-level) images are supported"
                )
            header.table_id = payload[2] >> 4
            header.predictor = payload[1 + 2 * count]
            header.point_transform = payload[3 + 2 * count] & 0x0F
            header.restart_interval = restart
            header.tables = tables
            if not 1 <= header.predictor <= 7:
                raise LosslessJpegError(f"predictor inválido / invalid predictor: {header.predictor}")
            if header.table_id not in tables:
                raise LosslessJpegError(
                    f"falta la tabla Huffman {header.table_id} / Huffman table {header.table_id} missing"
                )
            return header, pos + len(payload) + 2
        pos += len(payload) + 2


def _entropy_segments(data: bytes, start: int) -> tuple[list[np.ndarray], int]:
    """Split the entropy-coded data at RST markers and remove the stuffed zero bytes.

    Returns the unstuffed segments and the offset of the marker that ends the scan.
    """
    raw = np.frombuffer(data, dtype=np.uint8, offset=start)
    ff = np.flatnonzero(raw[:-1] == 0xFF)
    following = raw[ff + 1]
    is_rst = (following >= RST0) & (following <= RST0 + 7)
    ends = np.flatnonzero((following != 0x00) & ~is_rst)
    end = int(ff[ends[0]]) if ends.size else raw.size
    segments: list[np.ndarray] = []
    cut = 0
    for rst in ff[is_rst & (ff < end)]:
        segments.append(_unstuff(raw[cut:rst]))
        cut = int(rst) + 2
    segments.append(_unstuff(raw[cut:end]))
    return segments, start + end


def _unstuff(segment: np.ndarray) -> np.ndarray:
    if segment.size < 2:
        return segment.copy()
    stuffed = np.flatnonzero((segment[:-1] == 0xFF) & (segment[1:] == 0x00)) + 1
    return np.delete(segment, stuffed) if stuffed.size else segment.copy()


def _lookup_tables(table: HuffmanTable) -> tuple[np.ndarray, np.ndarray]:
    """For every 16-bit prefix: the code length (0 when invalid) and the category it codes."""
    lengths = np.zeros(1 << 16, dtype=np.int64)
    categories = np.zeros(1 << 16, dtype=np.int64)
    for symbol, (code, length) in table.code_lengths().items():
        lo = code << (16 - length)
        hi = (code + 1) << (16 - length)
        if hi > 1 << 16:
            raise LosslessJpegError("tabla Huffman inválida / invalid Huffman table")
        lengths[lo:hi] = length
        categories[lo:hi] = symbol
    return lengths, categories


def _windows(padded: np.ndarray, first: int, count: int) -> np.ndarray:
    """32-bit big-endian windows starting at every bit of bytes ``first .. first+count``."""
    b = padded[first : first + count + 5].astype(np.uint64)
    word = np.zeros(count, dtype=np.uint64)
    for j in range(5):
        word |= b[j : j + count] << np.uint64(32 - 8 * j)  # 40 bits, top at bit 39
    shifts = np.arange(8, 0, -1, dtype=np.uint64)  # bit s of the byte -> shift 8 - s
    return ((word[:, None] >> shifts[None, :]) & np.uint64(0xFFFFFFFF)).reshape(-1)


def _decode_differences(segment: np.ndarray, count: int, lengths: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Decode ``count`` Huffman-coded differences from one unstuffed entropy segment."""
    padded = np.concatenate([segment, np.zeros(16, dtype=np.uint8)])
    out = np.empty(count, dtype=np.int64)
    done = 0
    hop_start = 0  # bit offset of the next code, relative to the current chunk
    first = 0
    nbytes = segment.size + 4  # codes may end in the padding only past the real data
    while done < count and first < nbytes:
        size = min(_CHUNK_BYTES, nbytes - first)
        win = _windows(padded, first, size)
        prefix = (win >> np.uint64(16)).astype(np.intp)
        code_len = lengths[prefix]
        cat = cats[prefix]
        extra = np.where(cat == 16, 0, cat)
        hop = np.arange(win.size, dtype=np.int64) + code_len + extra
        hop[code_len == 0] = _INVALID_HOP
        hops = memoryview(hop.astype(np.int32) if win.size < _INVALID_HOP else hop)
        visited = array.array("q")
        append = visited.append
        limit = win.size
        q = hop_start
        remaining = count - done
        # The only per-pixel Python: jump from each code to the next one.
        while q < limit and remaining:
            append(q)
            q = hops[q]
            remaining -= 1
        pos = np.frombuffer(visited, dtype=np.int64)
        if pos.size:
            if (code_len[pos] == 0).any():
                raise LosslessJpegError("código Huffman inválido (datos corruptos) / invalid Huffman code (corrupt data)")
            s = cat[pos]
            n = code_len[pos] + extra[pos]
            bits = (win[pos] >> (np.uint64(32) - n.astype(np.uint64))).astype(np.int64)
            bits &= (np.int64(1) << extra[pos]) - 1
            half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
            diff = np.where(bits < half, bits - (np.int64(1) << s) + 1, bits)
            diff[s == 0] = 0
            diff[s == 16] = 32768
            out[done : done + pos.size] = diff
            done += pos.size
        if q >= _INVALID_HOP:
            break
        hop_start = q - limit
        first += size
    if done < count:
        raise LosslessJpegError(
            f"datos truncados: {done} de {count} muestras / truncated data: {done} of {count} samples"
        )
    return out


def _reconstruct(diff: np.ndarray, predictor: int, initial: int) -> np.ndarray:
    """Undo the prediction for one restart interval (``diff`` is rows x cols, int64)."""
    rows, cols = diff.shape
    x = np.empty_like(diff)
    x[0, 0] = initial + diff[0, 0]
    x[0, 1:] = x[0, 0] + np.cumsum(diff[0, 1:])
    x[0] &= _MASK16
    if rows == 1:
        return x
    # Every later row starts from the sample above it.
    if predictor == 1:
        col0 = (x[0, 0] + np.cumsum(diff[1:, 0])) & _MASK16
        body = diff[1:].copy()
        body[:, 0] = col0
        x[1:] = np.cumsum(body, axis=1) & _MASK16
    elif predictor == 2:
        x[1:] = (x[0][None, :] + np.cumsum(diff[1:], axis=0)) & _MASK16
    elif predictor in (3, 4, 5):
        for r in range(1, rows):
            above = x[r - 1]
            x[r, 0] = (above[0] + diff[r, 0]) & _MASK16
            if predictor == 3:
                x[r, 1:] = (above[:-1] + diff[r, 1:]) & _MASK16
            else:
                step = above[1:] - above[:-1]
                if predictor == 5:
                    step = step >> 1
                x[r, 1:] = (x[r, 0] + np.cumsum(step + diff[r, 1:])) & _MASK16
    else:
        # Predictors 6 and 7 depend non-linearly on the left sample: one pixel at a time.
        for r in range(1, rows):
            above = x[r - 1].tolist()
            d = diff[r].tolist()
            row = [0] * cols
            left = (above[0] + d[0]) & _MASK16
            row[0] = left
            for c in range(1, cols):
                if predictor == 6:
                    pred = above[c] + ((left - above[c - 1]) >> 1)
                else:
                    pred = (left + above[c]) >> 1
                left = (pred + d[c]) & _MASK16
                row[c] = left
            x[r] = row
    return x


def decode_lossless_jpeg(data: bytes, *, rows: int | None = None) -> np.ndarray:
    """Decode a grey-level lossless JPEG (SOF3) into a ``uint16`` array (rows x cols).

    ``rows`` is used only when the frame header says 0 lines and no DNL marker follows
    the scan (DDSM's ``.ics`` gives the real number). Raises :class:`LosslessJpegError`.
    """
    header, start = read_header(data)
    segments, end = _entropy_segments(data, start)
    height = header.rows
    if height == 0 and end + 6 <= len(data) and data[end + 1] == DNL:
        height = _u16(data, end + 4)
    if height == 0:
        if not rows:
            raise LosslessJpegError("el encabezado no dice cuántas líneas / header gives no line count")
        height = rows
    width = header.cols
    if width == 0:
        raise LosslessJpegError("ancho cero / zero width")
    lengths, cats = _lookup_tables(header.tables[header.table_id])
    total = height * width
    interval = header.restart_interval or total
    if interval % width and interval < total:
        raise LosslessJpegError(
            "intervalo de reinicio no múltiplo del ancho / restart interval not a multiple of the width"
        )
    initial = 1 << (header.precision - header.point_transform - 1)
    out = np.empty((height, width), dtype=np.int64)
    row = 0
    for index, segment in enumerate(segments):
        if row >= height:
            break
        block_rows = min(interval // width, height - row)
        diff = _decode_differences(segment, block_rows * width, lengths, cats).reshape(block_rows, width)
        out[row : row + block_rows] = _reconstruct(diff, header.predictor, initial)
        row += block_rows
        if row < height and index == len(segments) - 1:
            raise LosslessJpegError("faltan intervalos de reinicio / missing restart intervals")
    if row < height:
        raise LosslessJpegError("datos truncados / truncated data")
    if header.point_transform:
        out = (out << header.point_transform) & _MASK16
    return out.astype(np.uint16)


# --- encoding -----------------------------------------------------------------------------


def _category(magnitude: np.ndarray) -> np.ndarray:
    """SSSS: number of bits of each magnitude (0 for 0, 16 for 32768)."""
    cats = np.zeros(magnitude.shape, dtype=np.int64)
    nonzero = magnitude > 0
    cats[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    return cats


def _predict(x: np.ndarray, predictor: int, initial: int) -> np.ndarray:
    """The prediction of every sample of one restart interval (as the decoder will make it)."""
    pred = np.empty_like(x)
    pred[0, 0] = initial
    pred[0, 1:] = x[0, :-1]
    if x.shape[0] > 1:
        ra, rb, rc = x[1:, :-1], x[:-1, 1:], x[:-1, :-1]
        pred[1:, 0] = x[:-1, 0]
        pred[1:, 1:] = {
            1: lambda: ra,
            2: lambda: rb,
            3: lambda: rc,
            4: lambda: ra + rb - rc,
            5: lambda: ra + ((rb - rc) >> 1),
            6: lambda: rb + ((ra - rc) >> 1),
            7: lambda: (ra + rb) >> 1,
        }[predictor]()
    return pred


def optimal_huffman_table(counts: np.ndarray) -> HuffmanTable:
    """A length-limited (16 bits) Huffman table for category counts, as in T.81 Annex K.2."""
    freq = [int(c) for c in counts] + [0] * (257 - len(counts))
    freq[256] = 1  # reserved symbol: no code of all ones
    codesize = [0] * 257
    others = [-1] * 257
    while True:
        live = [i for i in range(257) if freq[i] > 0]
        if len(live) < 2:
            break
        v1 = min(live, key=lambda i: (freq[i], -i))
        v2 = min((i for i in live if i != v1), key=lambda i: (freq[i], -i))
        freq[v1] += freq[v2]
        freq[v2] = 0
        codesize[v1] += 1
        while others[v1] >= 0:
            v1 = others[v1]
            codesize[v1] += 1
        others[v1] = v2
        codesize[v2] += 1
        while others[v2] >= 0:
            v2 = others[v2]
            codesize[v2] += 1
    bits = [0] * 33
    for size in codesize:
        if size:
            bits[size] += 1
    for i in range(32, 16, -1):
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # drop the reserved symbol
    order = sorted((s for s in range(256) if codesize[s]), key=lambda s: (codesize[s], s))
    return HuffmanTable(bits=bits[1:17], values=order)


def _pack(values: np.ndarray, lengths: np.ndarray) -> bytes:
    """Concatenate variable-length codes (MSB first), pad with ones, stuff 0xFF bytes."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(values.size), lengths)
    offset = np.arange(total) - np.repeat(starts, lengths)
    bits = ((values[owner] >> (lengths[owner] - 1 - offset)) & 1).astype(np.uint8)
    pad = (-total) % 8
    bits = np.concatenate([bits, np.ones(pad, dtype=np.uint8)])
    packed = np.packbits(bits)
    ff = np.flatnonzero(packed == 0xFF)
    return np.insert(packed, ff + 1, 0).tobytes()


def encode_lossless_jpeg(
    image: np.ndarray,
    *,
    precision: int = 16,
    predictor: int = 1,
    restart_rows: int = 0,
    header_shape: tuple[int, int] | None = None,
) -> bytes:
    """Encode a 2-D unsigned image as a lossless JPEG (SOF3, one component, Huffman).

    ``restart_rows`` puts a restart marker every that many rows. ``header_shape`` writes other
    (rows, cols) into SOF3 while coding the samples in the same order with that width: it
    reproduces DDSM files whose header dimensions disagree with the ``.ics`` (the pixels are the
    same stream, to be reshaped). Point transform is always 0.
    """
    pixels = np.asarray(image)
    if pixels.ndim != 2 or pixels.size == 0:
        raise LosslessJpegError("se esperaba una imagen 2-D / expected a 2-D image")
    if not 1 <= predictor <= 7:
        raise LosslessJpegError(f"predictor inválido / invalid predictor: {predictor}")
    if not 2 <= precision <= 16 or int(pixels.max()) >= 1 << precision or int(pixels.min()) < 0:
        raise LosslessJpegError(f"valores fuera de {precision} bits / values outside {precision} bits")
    rows, cols = header_shape if header_shape is not None else pixels.shape
    if rows * cols != pixels.size:
        raise LosslessJpegError("header_shape no coincide con el número de pixeles / does not match pixel count")
    x = pixels.astype(np.int64).reshape(rows, cols)
    block = restart_rows if 0 < restart_rows < rows else rows
    initial = 1 << (precision - 1)
    diffs = []
    for r in range(0, rows, block):
        part = x[r : r + block]
        diffs.append((part - _predict(part, predictor, initial)) & _MASK16)
    signed = [np.where(d >= 0x8000, d - 0x10000, d).ravel() for d in diffs]
    all_signed = np.concatenate(signed)
    cats_all = _category(np.abs(all_signed))
    table = optimal_huffman_table(np.bincount(cats_all, minlength=17))
    codes = table.code_lengths()
    code_of = np.zeros(17, dtype=np.int64)
    len_of = np.zeros(17, dtype=np.int64)
    for symbol, (code, length) in codes.items():
        code_of[symbol], len_of[symbol] = code, length

    def scan_bytes(values: np.ndarray) -> bytes:
        cats = _category(np.abs(values))
        extra = np.where(cats == 16, 0, cats)
        low = np.where(values < 0, values - 1, values) & ((np.int64(1) << extra) - 1)
        return _pack((code_of[cats] << extra) | low, len_of[cats] + extra)

    out = bytearray(b"\xff\xd8")
    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    out += b"\xff\xc3" + (len(sof) + 2).to_bytes(2, "big") + sof
    dht = bytes([0x00]) + bytes(table.bits) + bytes(table.values)
    out += b"\xff\xc4" + (len(dht) + 2).to_bytes(2, "big") + dht
    if block < rows:
        out += b"\xff\xdd\x00\x04" + (block * cols).to_bytes(2, "big")
    sos = bytes([1, 1, 0x00, predictor, 0, 0])
    out += b"\xff\xda" + (len(sos) + 2).to_bytes(2, "big") + sos
    for index, values in enumerate(signed):
        if index:
            out += bytes([0xFF, RST0 + (index - 1) % 8])
        out += scan_bytes(values)
    out += b"\xff\xd9"
    return bytes(out)


__all__ = [
    "FrameHeader",
    "HuffmanTable",
    "LosslessJpegError",
    "decode_lossless_jpeg",
    "encode_lossless_jpeg",
    "optimal_huffman_table",
    "read_header",
]
