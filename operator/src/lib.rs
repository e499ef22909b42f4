//! The operator: network and ceremony controllers, rollout planner, health collector. Built in issues 7 and 8.
