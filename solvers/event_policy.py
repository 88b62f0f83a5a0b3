"""What every event-serving backend of this project shares (kind "event", problems.events_core):
the tolerance of the root finder that locates an event on a step's dense interpolant."""

#: The event time is taken when the root's bracket is at most this many ulps of the dtype wide,
#: in units of theta (the fraction of the step), i.e. ROOT_TOL_ULPS * eps * h in time; its left
#: end (where the condition has not crossed yet: DiffEqGPU's LeftRootFind).
ROOT_TOL_ULPS = 4
#: Iteration cap of the root finder (Illinois regula falsi; DiffEqGPU's ITP also stops at 100).
ROOT_MAX_ITER = 100
