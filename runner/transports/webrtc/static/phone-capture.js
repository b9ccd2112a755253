// An AudioWorklet that hands the microphone's samples (at the context's 8 kHz) to phone.js.
registerProcessor("phone-capture", class extends AudioWorkletProcessor {
  process([input]) {
    if (input.length) this.port.postMessage(input[0].slice());
    return true;
  }
});
