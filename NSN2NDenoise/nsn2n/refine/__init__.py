"""Refinement stages after a network: each takes the noisy stack and the network output
and returns a better estimate whose values come from the noisy data.

* ``wiener``: empirical Wiener shrinkage in a 3-D DCT, the network output as pilot;
* ``nonlocal_means``: non-local means of the noisy voxels, similarity from the network output;
* ``block_matching``: collaborative Wiener filtering of groups of similar cubes (BM4D's
  second step), the network output as pilot;
* ``combine``: mixes them by their risk (Stein's unbiased risk estimate);
* ``guard``: gives back what was removed where it stands out from the noise.
"""
