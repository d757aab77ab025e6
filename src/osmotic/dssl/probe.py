"""How good and how alike frozen representations are: linear probe, kNN, linear CKA.

Labels are used here and to partition clients, nowhere else. The linear probe is multinomial
logistic regression (scikit-learn, L-BFGS) on standardised features of the labelled pool,
scored on the test set; kNN votes among the 20 most cosine-similar pool images.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

K_NEIGHBOURS = 20


@torch.inference_mode()
def features(backbone: nn.Module, images: Tensor, chunk: int = 1000) -> np.ndarray:
    """Frozen features [n, d] of `images`, in chunks (bounded memory)."""
    backbone.eval()
    return torch.cat([backbone(images[s : s + chunk]) for s in range(0, len(images), chunk)]
                     ).double().numpy()


def linear_probe(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                 test_labels: np.ndarray, seed: int = 0) -> float:
    """Test accuracy of logistic regression fitted on standardised training features. One BLAS
    thread: on a busy 2-core machine a multi-threaded L-BFGS took 30x longer on tiny problems."""
    with threadpool_limits(1):
        scaler = StandardScaler().fit(train)
        clf = LogisticRegression(max_iter=500, random_state=seed)
        clf.fit(scaler.transform(train), train_labels)
        return float((clf.predict(scaler.transform(test)) == test_labels).mean())


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                 test_labels: np.ndarray, k: int = K_NEIGHBOURS, chunk: int = 2000) -> float:
    """Majority vote of the k most cosine-similar training points (ties: the smaller label)."""
    a = torch.nn.functional.normalize(torch.from_numpy(train), dim=1)
    b = torch.nn.functional.normalize(torch.from_numpy(test), dim=1)
    labels = torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
    classes = int(labels.max()) + 1
    correct = 0
    for s in range(0, len(b), chunk):
        top = (b[s : s + chunk] @ a.T).topk(min(k, len(a)), dim=1).indices
        votes = torch.zeros(len(top), classes).scatter_add_(1, labels[top], torch.ones(top.shape))
        correct += int((votes.argmax(1).numpy() == test_labels[s : s + chunk]).sum())
    return correct / len(b)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations of the same n inputs (1: the
    same up to rotation and scale, 0: unrelated)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def mean_pairwise_cka(feats: list[np.ndarray]) -> float:
    """Mean linear CKA over all pairs of clients' features of one probe batch (1 if one client)."""
    pairs = [linear_cka(feats[i], feats[j]) for i in range(len(feats))
             for j in range(i + 1, len(feats))]
    return float(np.mean(pairs)) if pairs else 1.0
