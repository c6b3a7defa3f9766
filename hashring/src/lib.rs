//! The Thanos `hashrings.json` contract shared by the receiver and the operator.
