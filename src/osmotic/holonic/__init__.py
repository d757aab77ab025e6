"""Holonic Learning (HoL) and its averaging instance HoAL: agents grouped into a holarchy (a tree
of holons), models averaged horizontally among neighbours and vertically along the tree.
FedAvg, hierarchical (client-edge-cloud) FL and P2P learning are special holarchies."""
