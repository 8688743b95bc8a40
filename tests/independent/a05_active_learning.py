ANSWERS = {
    "ex1_cold_start": '''
def cold_start(X, k):
    km = KMeans(k, n_init=10, random_state=SEED).fit(X)
    order = sorted(range(k), key=lambda c: -np.sum(km.labels_ == c))
    picked = []
    for c in order:
        d = np.linalg.norm(X - km.cluster_centers_[c], axis=1)
        picked.append(int(np.argmin(d)))
    return picked
''',
    "ex2_margins": '''
def margins(model, X):
    proba = model.predict_proba(X)
    top2 = np.partition(proba, -2, axis=1)[:, -2:]
    return np.abs(top2[:, 1] - top2[:, 0])
''',
    "ex3_loop": '''
def run_loop(X, label_of, classes, strategy, rng, stop=None):
    rows, labels, history = [], [], []
    if strategy == "random":
        queue = [int(r) for r in rng.permutation(len(X))]
    else:
        queue = list(cold_start(X, COLD_START))
    model = None
    for step in range(BUDGET):
        if strategy == "random" or step < len(queue):
            row = queue[step]
        elif model is None:
            dists = np.min(np.linalg.norm(X[:, None, :] - X[rows][None, :, :], axis=2), axis=1)
            dists[rows] = -np.inf
            row = int(np.argmax(dists))
        else:
            m = margins(model, X)
            m[rows] = np.inf
            row = int(np.argmin(m))
        rows.append(row)
        labels.append(int(np.asarray(label_of([row])).ravel()[0]))
        model = fit_model(X, rows, labels)
        history.append(predict_pool(model, X, rows, labels, classes))
        if stop is not None and stop(history):
            break
    return rows, labels, history
''',
    "ex4_stop": '''
def should_stop(history):
    if len(history) < COLD_START + PATIENCE:
        return False
    for k in range(1, PATIENCE + 1):
        if np.mean(history[-k] != history[-k - 1]) >= STOP_CHANGE:
            return False
    return np.True_
''',
    "ex5_predict": '''
student = LogisticRegression(max_iter=MAX_ITER)
student.fit(z_c, history[-1])
def predict(images):
    feats = pca_c.transform(base.embed(images, layer="conv"))
    return student.predict(feats).astype(np.int64)
''',
}
