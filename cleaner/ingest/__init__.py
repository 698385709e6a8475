"""Raw images to a manifest: class folders, tables, digits, MNIST, the mask layout.

Also ``cleaner init`` (a starting pipeline chosen from the images) and the
synthetic noise and data sets the benchmarks measure with.
"""
