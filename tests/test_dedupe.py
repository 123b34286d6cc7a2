import io
import itertools

import numpy as np
import pytest
from PIL import Image

from catdog import dedupe
from catdog.dedupe import (
    group_near_duplicates,
    hamming_distance,
    hash_file,
    pairwise_distances,
    perceptual_hash,
)


def smooth_image(seed, size=(96, 72)):
    """A photo-like picture: a few random colour blobs, smoothly interpolated."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(cells, "RGB").resize(size, Image.Resampling.BICUBIC)


def reencoded(image, quality=60, size=None):
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def reference_groups(hashes, max_distance):
    """Plain union-find over every pair, the smallest index as each group's id."""
    parent = list(range(len(hashes)))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in itertools.combinations(range(len(hashes)), 2):
        if hamming_distance(hashes[i], hashes[j]) <= max_distance:
            a, b = find(i), find(j)
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(hashes))]


def test_dhash_bits_compare_horizontal_neighbours():
    falling = np.tile(np.linspace(255, 0, 90).astype(np.uint8), (80, 1))  # bright left, dark right
    assert perceptual_hash(Image.fromarray(falling, "L")) == 2**64 - 1
    assert perceptual_hash(Image.fromarray(falling[:, ::-1].copy(), "L")) == 0
    # vertical gradients leave every horizontal comparison equal: no bit set
    assert perceptual_hash(Image.fromarray(falling.T.copy(), "L")) == 0
    assert 0 <= perceptual_hash(smooth_image(0)) < 2**64


@pytest.mark.parametrize("seed", range(6))
def test_dhash_survives_resizing_and_jpeg_but_separates_pictures(seed):
    image = smooth_image(seed)
    h = perceptual_hash(image)
    copies = [
        image.resize((48, 36), Image.Resampling.BILINEAR),  # half size
        image.resize((200, 150), Image.Resampling.BICUBIC),  # larger
        reencoded(image, quality=60),
        reencoded(image, quality=60, size=(48, 36)),
    ]
    for copy in copies:
        assert hamming_distance(h, perceptual_hash(copy)) <= 4
    for other in range(100, 106):
        assert hamming_distance(h, perceptual_hash(smooth_image(other))) >= 12


def test_hash_file_decodes_any_mode_as_rgb(tmp_path):
    image = smooth_image(3)
    image.save(tmp_path / "a.png")
    image.convert("RGBA").save(tmp_path / "b.png")
    image.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "c.png")
    image.save(tmp_path / "d.jpg", quality=60)
    expected = perceptual_hash(image)
    assert hash_file(tmp_path / "a.png") == expected
    assert hash_file(tmp_path / "b.png") == expected
    assert hamming_distance(hash_file(tmp_path / "c.png"), expected) <= 4
    assert hamming_distance(hash_file(str(tmp_path / "d.jpg")), expected) <= 4
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(OSError):
        hash_file(tmp_path / "bad.jpg")


def test_hamming_distance_and_matrix():
    assert hamming_distance(0, 2**64 - 1) == 64
    assert hamming_distance(0b1011, 0b0001) == 2
    matrix = pairwise_distances([0, 1, 3, 2**64 - 1])
    assert matrix.tolist() == [[0, 1, 2, 64], [1, 0, 1, 63], [2, 1, 0, 62], [64, 63, 62, 0]]


def test_grouping_is_transitive():
    a = 0x0123456789ABCDEF
    b = a ^ 0b111  # 3 bits from a
    c = b ^ (0b111 << 40)  # 3 bits from b, 6 from a
    far = ~a & (2**64 - 1)
    assert hamming_distance(a, c) > 4
    assert group_near_duplicates([a, far, c, b], max_distance=4).tolist() == [0, 1, 0, 0]
    # without b in between, a and c are apart
    assert group_near_duplicates([a, far, c], max_distance=4).tolist() == [0, 1, 2]
    assert group_near_duplicates([c, a, b], max_distance=3).tolist() == [0, 0, 0]
    assert group_near_duplicates([c, a, b], max_distance=2).tolist() == [0, 1, 2]
    assert group_near_duplicates([a, b, a], max_distance=0).tolist() == [0, 1, 0]


def test_grouping_is_deterministic_and_ids_are_first_members():
    rng = np.random.default_rng(5)
    centres = rng.integers(0, 2**63, 30, dtype=np.uint64).tolist()
    hashes = []
    for _ in range(200):
        flips = rng.choice(64, rng.integers(0, 3), replace=False)
        hashes.append(centres[rng.integers(0, 30)] ^ sum(1 << int(b) for b in flips))
    groups = group_near_duplicates(hashes, 4)
    assert groups.dtype == np.int64 and groups.shape == (200,)
    assert groups.tolist() == group_near_duplicates(hashes, 4).tolist()
    assert groups.tolist() == group_near_duplicates(np.array(hashes, dtype=np.uint64)).tolist()
    assert all(groups[i] <= i and groups[groups[i]] == groups[i] for i in range(200))
    # the partition does not depend on the order of the input
    perm = rng.permutation(200)
    shuffled = group_near_duplicates([hashes[i] for i in perm], 4)
    pairs = {(int(groups[perm[i]]), int(shuffled[i])) for i in range(200)}
    assert len(pairs) == len(set(groups.tolist())) == len(set(shuffled.tolist()))


@pytest.mark.parametrize("max_distance", [0, 3, 4, 9])
def test_vectorised_grouping_matches_plain_union_find(monkeypatch, max_distance):
    monkeypatch.setattr(dedupe, "_BLOCK_ELEMENTS", 97)  # many small blocks
    rng = np.random.default_rng(max_distance)
    centres = rng.integers(0, 2**64 - 1, 25, dtype=np.uint64, endpoint=True).tolist()
    hashes = []
    for _ in range(150):
        flips = rng.choice(64, rng.integers(0, 5), replace=False)
        hashes.append(centres[rng.integers(0, 25)] ^ sum(1 << int(b) for b in flips))
    expected = reference_groups(hashes, max_distance)
    assert group_near_duplicates(hashes, max_distance).tolist() == expected
    assert len(set(expected)) < len(hashes)  # the data has groups to find


def test_grouping_rejects_bad_input_and_handles_empty():
    assert group_near_duplicates([]).tolist() == []
    assert group_near_duplicates([2**64 - 1]).tolist() == [0]
    with pytest.raises(ValueError, match="max_distance"):
        group_near_duplicates([1, 2], max_distance=65)
    with pytest.raises(ValueError, match="64-bit"):
        group_near_duplicates([1, -2])
    with pytest.raises(ValueError, match="64-bit"):
        group_near_duplicates([2**64])


def test_grouping_thousands_of_hashes_finds_the_one_near_pair():
    """Its speed against the pairwise comparison is measured by bench/dedupe.py."""
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64 - 1, 2400, dtype=np.uint64, endpoint=True).tolist()
    hashes[1234] = hashes[17] ^ 1
    groups = group_near_duplicates(hashes, 4)
    assert groups[1234] == 17 and len(set(groups.tolist())) == 2399
