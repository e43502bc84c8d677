"""Search: query terms, fusion of lexical and vector rankings, and the final score.

Pure code: the service asks storage for candidates and hands them here.
"""
