// The page's shared state; on window.gridgov for tests and the console.

export const state = {
  me: null,
  map: null,
  style: null,
  layers: [],
  selected: null,
  layerGroups: [],
};
window.gridgov = state;
