"""Speaker labels (issue 17): voice embeddings, clustering, labelling and DER.

`clustering` and `der` are pure numpy (fast tests); `embedding` holds the model behind
a small interface so a deployment can choose a bundled or a stronger named model.
"""
