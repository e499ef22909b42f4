mod decisions;
mod fixtures;
mod halts;
mod observe;
mod props;
mod sim;
