"""CPU training of the fixture pose nets and of the DynPose router (issue 9).

``python -m build.train.fixtures --seed 0`` regenerates everything;
``python -m build.router`` trains a router for any pair of checkpoints.
"""
