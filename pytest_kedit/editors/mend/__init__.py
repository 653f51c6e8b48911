"""MEND (Mitchell et al. 2022): the editor, its hypernetwork, where trained networks are kept, the
training data made from benchmark cases, and ``kedit train-mend``.
"""
