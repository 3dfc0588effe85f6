//! Cities and the round trips between them: measured figures from the prices file where it has
//! them, else an estimate from the great-circle distance (always marked as such).

use std::collections::HashMap;

use crate::prices::Area;

/// Index of a city in [`Cities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CityId(usize);

#[derive(Debug, Clone)]
pub(crate) struct City {
    pub(crate) code: String,
    pub(crate) name: String,
    pub(crate) area: Area,
    pub(crate) lat: f64,
    pub(crate) lon: f64,
}

/// A round trip between two cities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rtt {
    pub(crate) ms: f64,
    /// Estimated from distance, not a figure of the prices file.
    pub(crate) estimated: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Cities {
    list: Vec<City>,
    known: HashMap<(CityId, CityId), f64>,
    fixed_ms: f64,
    route_factor: f64,
}

const EARTH_RADIUS_KM: f64 = 6371.0;

impl Cities {
    pub(crate) fn new(mut list: Vec<City>, fixed_ms: f64, route_factor: f64) -> Self {
        list.sort_by(|a, b| a.code.cmp(&b.code));
        Self {
            list,
            known: HashMap::new(),
            fixed_ms,
            route_factor,
        }
    }

    /// Measured round trips, keyed by (smaller id, larger id).
    pub(crate) fn set_known(&mut self, known: HashMap<(CityId, CityId), f64>) {
        self.known = known;
    }

    pub(crate) fn find(&self, code: &str) -> Option<CityId> {
        self.list
            .binary_search_by(|c| c.code.as_str().cmp(code))
            .ok()
            .map(CityId)
    }

    pub(crate) fn get(&self, id: CityId) -> &City {
        &self.list[id.0]
    }

    pub(crate) fn codes(&self) -> Vec<String> {
        self.list.iter().map(|c| c.code.clone()).collect()
    }

    /// The round trip between two cities; zero within a city.
    pub(crate) fn rtt(&self, a: CityId, b: CityId) -> Rtt {
        if a == b {
            return Rtt {
                ms: 0.0,
                estimated: false,
            };
        }
        if let Some(&ms) = self.known.get(&(a.min(b), a.max(b))) {
            return Rtt {
                ms,
                estimated: false,
            };
        }
        // Light in fiber covers ~200 km/ms, so ~100 km of distance per ms of round trip; real
        // routes are longer than the great circle, hence the route factor.
        let km = great_circle_km(self.get(a), self.get(b));
        Rtt {
            ms: (self.fixed_ms + self.route_factor * km / 100.0).round(),
            estimated: true,
        }
    }
}

fn great_circle_km(a: &City, b: &City) -> f64 {
    let (la1, lo1) = (a.lat.to_radians(), a.lon.to_radians());
    let (la2, lo2) = (b.lat.to_radians(), b.lon.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city(code: &str, lat: f64, lon: f64) -> City {
        City {
            code: code.into(),
            name: code.into(),
            area: Area::Europe,
            lat,
            lon,
        }
    }

    #[test]
    fn known_pairs_are_symmetric_and_unknown_pairs_are_estimated_from_distance() {
        let mut cities = Cities::new(
            vec![
                city("cdg", 49.01, 2.55),
                city("ewr", 40.69, -74.17),
                city("fra", 50.03, 8.57),
            ],
            5.0,
            1.5,
        );
        let (cdg, ewr, fra) = (
            cities.find("cdg").unwrap(),
            cities.find("ewr").unwrap(),
            cities.find("fra").unwrap(),
        );
        cities.set_known(HashMap::from([((cdg.min(ewr), cdg.max(ewr)), 75.0)]));
        assert_eq!(
            cities.rtt(ewr, cdg),
            Rtt {
                ms: 75.0,
                estimated: false
            }
        );
        assert_eq!(cities.rtt(cdg, cdg).ms, 0.0);
        // Paris-Frankfurt is ~450 km: 5 + 1.5 x 4.5 = ~12 ms.
        let est = cities.rtt(fra, cdg);
        assert!(est.estimated);
        assert_eq!(est.ms, 12.0);
    }
}
