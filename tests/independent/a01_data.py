ANSWERS = {
    "ex1_counts": '''
counts = {}
for label in ds.classes:
    counts[label] = int((ds.labels == label).sum())
''',
    "ex2_merge": '''
def merge(labels, track):
    out = np.asarray(labels).astype(np.int64).copy()
    for digit in track:
        out[out == digit] = data.C
    return out
''',
    "ex3_find_c": '''
c_idx = np.where(ds.labels == data.C)[0]
''',
    "ex4_annotate": '''
bought_idx = rng.choice(c_idx, N_ANNOTATIONS, replace=False)
bought = oracle.annotate(bought_idx)
''',
}
