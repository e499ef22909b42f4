//! Custom resources `BeaconNetwork` and `BeaconCeremony` (group `beacons.dev`). Built in issue 7.
