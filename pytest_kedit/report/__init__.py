"""The visual report: one self-contained HTML page of one or several runs, its sections, the numbers
behind each figure, the figures and their matplotlib canvas (the ``html`` extra).
"""
