ANSWERS = {
    "ex1_confusion": '''
predicted = base.predict(ds.test_images)
cm = evaluate.confusion_matrix(ds.test_labels, predicted, labels=ds.classes)
''',
    "ex2_c_rate": '''
said = base.predict(evaluate.track_test_images())
c_rate = float((said == data.C).sum() / len(said))
''',
    "ex3_make_predict": '''
def make_predict(images, digits):
    digits = np.asarray(digits).astype(int)
    if np.unique(digits).size < 2:
        value = int(digits[0])
        def constant(new):
            return np.full(len(new), value, dtype=int)
        return constant
    x = np.asarray(images).reshape(len(images), 784) / 255.0
    model = LogisticRegression(max_iter=MAX_ITER)
    model.fit(x, digits)
    def predict(new):
        return model.predict(np.asarray(new).reshape(len(new), 784) / 255.0).astype(int)
    return predict
''',
    "ex4_random_loop": '''
order = rng.permutation(ds.c_indices)
curve_n, curve_check, hits = [], [], []
predict = None
have = 0
for n in STEPS:
    new_idx = order[have:n]
    before = None if predict is None else predict(ds.images[new_idx])
    new_digits = oracle.annotate(new_idx)
    if before is not None:
        hits += [bool(a == b) for a, b in zip(before, new_digits)]
    have = n
    all_idx = order[:n]
    predict = make_predict(ds.images[all_idx], oracle.annotate(all_idx))
    curve_n.append(oracle.count())
    if len(hits) >= CHECK_SIZE:
        curve_check.append(sum(hits[-CHECK_SIZE:]) / CHECK_SIZE)
    else:
        curve_check.append(float("nan"))
    if len(hits) >= CHECK_SIZE and curve_check[-1] >= STOP_AT:
        break
''',
}
