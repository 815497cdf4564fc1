"""The learner: loss, optimisation step and weight publishing (Ray at the edge)."""
