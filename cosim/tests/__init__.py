"""cocotb test modules; they run inside the simulator, started by spikeloop.cosim.runner."""
